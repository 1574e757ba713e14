"""``duo report --open-pr`` against the fake GitHub through PyGithub: branch, files, label, watermark, rerun updates,
and links pinned to commits (issue 12)."""

import re

import pytest
import yaml

from pipeline.cli import main
from pipeline.store import open_store
from tests.fakes.github_server import TOKEN
from tests.round_artifacts import build_prepare, build_round, make_config

BRANCH = "duo/demo/round-1"
FILES = ("report.md", "metrics.json", "score_distribution.png", "category_means.png", "round_trend.png")


@pytest.fixture
def task(tmp_path, monkeypatch, fake_github):
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))  # the repository root the report paths are relative to
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "gh_output"))
    cfg = make_config(tmp_path)
    store = open_store(cfg)
    build_prepare(store)
    build_round(store, 1, sim=71.2, prec=80)
    return cfg, store


def outputs(tmp_path) -> dict:
    out = {}
    for line in (tmp_path / "gh_output").read_text().splitlines():
        key, value = line.split("=", 1)
        out[key] = value  # the latest write wins, as in Actions
    return out


def test_open_pr_commits_report_files_with_label_and_watermark(task, fake_github, tmp_path):
    cfg, _ = task
    assert main(["report", str(cfg.source_path), "--open-pr"]) == 0
    local = tmp_path / "reports" / "demo" / "round-1"
    for name in FILES:
        assert fake_github.file(BRANCH, f"reports/demo/round-1/{name}") == (local / name).read_bytes(), name
    assert fake_github.file("main", "reports/demo/round-1/report.md") is None  # the base branch is untouched
    assert fake_github.commits[fake_github.branches[BRANCH]]["tree"]["README.md"]  # branched from main's head
    assert len(fake_github.pulls) == 1
    pr = fake_github.pulls[0]
    assert (pr["head"], pr["base"], pr["state"], pr["labels"]) == (BRANCH, "main", "open", ["duo-report"])
    assert "duo-report" in fake_github.labels
    assert pr["body"].startswith("<!-- duo-report task=demo round=1 -->")
    assert "## ❌ FAIL" in pr["body"] and "| similarity | 71.2 |" in pr["body"]
    assert "reports/demo/round-1/report.md" in pr["body"] and "score_distribution.png?raw=true" in pr["body"]
    assert pr["title"] == "duo: demo round 1: FAIL, next: round 2"  # not "FAIL (continue)"
    out = outputs(tmp_path)
    assert out["pr-number"] == "1" and out["pr-url"].endswith("/acme/duo-demo/pull/1")
    # the token is sent as a header only: never in a committed file, PR body or any request body
    assert all(TOKEN.encode() not in data for data in fake_github.files(BRANCH).values())
    assert all(TOKEN not in str(e["body"]) for e in fake_github.log)


def test_rerun_updates_the_same_pr(task, fake_github, tmp_path):
    cfg, store = task
    assert main(["report", str(cfg.source_path), "--open-pr"]) == 0
    first_md = fake_github.file(BRANCH, "reports/demo/round-1/report.md")
    build_round(store, 1, sim=84.5, prec=80)  # the round is re-evaluated: new numbers
    assert main(["report", str(cfg.source_path), "--open-pr"]) == 0
    assert len(fake_github.pulls) == 1
    assert len(fake_github.requests("POST", r"/pulls$")) == 1
    assert len(fake_github.requests("PATCH", r"/pulls/1$")) == 1
    assert len(fake_github.requests("POST", r"/git/refs$")) == 1
    body = fake_github.pulls[0]["body"]
    assert "| similarity | 84.5 |" in body and body.count("<!-- duo-report task=demo round=1 -->") == 1
    new_md = fake_github.file(BRANCH, "reports/demo/round-1/report.md")
    assert new_md != first_md and b"84.5" in new_md
    assert fake_github.pulls[0]["labels"] == ["duo-report"]
    assert outputs(tmp_path)["pr-number"] == "1"


def test_rerun_with_nothing_changed_commits_nothing(task, fake_github):
    cfg, _ = task
    assert main(["report", str(cfg.source_path), "--open-pr"]) == 0
    puts = len(fake_github.requests("PUT", "/contents/"))
    assert puts == len(FILES)
    assert main(["report", str(cfg.source_path), "--open-pr"]) == 0
    assert len(fake_github.requests("PUT", "/contents/")) == puts
    assert len(fake_github.pulls) == 1


def test_base_branch_from_config(task, fake_github):
    cfg, _ = task
    fake_github.branches["develop"] = fake_github.branches["main"]
    assert main(["report", str(cfg.source_path), "--set", "report.base_branch=develop", "--open-pr"]) == 0
    assert fake_github.pulls[0]["base"] == "develop"


def test_bad_token_is_one_line_and_keeps_the_report(task, fake_github, tmp_path, monkeypatch, capsys):
    cfg, _ = task
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_wrongToken000")
    assert main(["report", str(cfg.source_path), "--open-pr"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "401 Bad credentials" in err[0] and "ghs_wrongToken000" not in err[0]
    assert (tmp_path / "reports" / "demo" / "round-1" / "report.md").is_file()
    assert not fake_github.pulls


def test_missing_repository_variable(task, monkeypatch, capsys):
    cfg, _ = task
    monkeypatch.delenv("GITHUB_REPOSITORY")
    assert main(["report", str(cfg.source_path), "--open-pr"]) == 1
    assert "GITHUB_REPOSITORY" in capsys.readouterr().err


def test_report_dir_outside_the_repository(task, tmp_path, monkeypatch, capsys):
    cfg, _ = task
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path / "elsewhere"))
    assert main(["report", str(cfg.source_path), "--open-pr"]) == 1
    assert "outside the git repository" in capsys.readouterr().err


def test_reads_are_retried_on_server_errors(task, fake_github):
    cfg, _ = task
    fake_github.set_faults(rate_500=0.5, seed=3, only_paths=[r"/branches/", r"/labels/"])  # GET-only paths
    assert main(["report", str(cfg.source_path), "--open-pr"]) == 0
    assert fake_github.fault_counts["500"] >= 1
    assert len(fake_github.pulls) == 1 and fake_github.pulls[0]["labels"] == ["duo-report"]


def test_server_error_on_a_write_is_one_line(task, fake_github, capsys):
    cfg, _ = task
    fake_github.set_faults(rate_500=1.0, only_paths=[r"/pulls$"])
    assert main(["report", str(cfg.source_path), "--open-pr"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "500" in err[0] and "pull request" in err[0]
    assert len(fake_github.requests("GET", r"/pulls$")) == 4  # one try and three retries of the read


# --------------------------------------------------------------------------- issue 12: links that outlive branches

SHA = re.compile(r"^[0-9a-f]{40}$")


def links(body: str) -> list[str]:
    """Every markdown link and image target in ``body``."""
    return re.findall(r"\]\((\S+?)\)", body)


def revision_of(url: str, marker: str) -> str:
    """The revision segment after ``/tree/`` or ``/blob/`` in a Hub or GitHub URL."""
    return url.split(marker, 1)[1].split("/", 1)[0].split("?", 1)[0]


def test_pr_images_and_report_link_are_pinned_to_the_commit(task, fake_github):
    cfg, _ = task
    assert main(["report", str(cfg.source_path), "--open-pr"]) == 0
    body = fake_github.pulls[0]["body"]
    head = fake_github.branches[BRANCH]
    github = [u for u in links(body) if "/acme/duo-demo/blob/" in u]
    assert len(github) == 4  # three charts and the report
    for url in github:
        rev = revision_of(url, "/blob/")
        assert SHA.match(rev) and rev == head, url
        assert f"/blob/{BRANCH}" not in url and "/blob/main/" not in url
        path = url.split(f"/blob/{rev}/", 1)[1].split("?", 1)[0]
        assert path in fake_github.commits[rev]["tree"], path  # the file is in that commit
    assert any(u.endswith("/round_trend.png?raw=true") is False and u.endswith("report.md") for u in github)


def test_hub_store_pr_pins_adapter_and_data_by_commit(tmp_path, monkeypatch, fake_github, fake_hub):
    from tests.round_artifacts import CONFIG, build_baseline

    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    cfg = make_config(tmp_path, text=CONFIG + "store: {kind: hub, namespace: acme}\n")
    store = open_store(cfg)
    store.retry_delays = (0.0,)
    build_prepare(store)
    build_baseline(store)
    build_round(store, 1, sim=71.2, prec=80)
    assert main(["report", str(cfg.source_path), "--open-pr"]) == 0
    body = fake_github.pulls[0]["body"]
    hub = [u for u in links(body) if u.startswith(fake_hub.url)]
    adapter = store.describe("round-1/finetune")["commit"]
    data = {n: store.describe(n)["commit"] for n in ("prepare", "round-1/synthesize", "round-1/evaluate")}
    assert SHA.match(adapter) and all(SHA.match(v) for v in data.values())
    assert f"{fake_hub.url}/acme/demo-duo-adapter/tree/{adapter}" in hub
    for name, sha in data.items():
        assert f"{fake_hub.url}/datasets/acme/demo-duo-data/tree/{sha}/{name}" in hub
    for url in hub:  # every Hub link names a commit, never a branch or tag
        assert SHA.match(revision_of(url, "/tree/")), url
    assert f'revision="{adapter}"' in body and 'revision="round-1"' not in body
    assert "branch `round-1`" in body  # the name, for people
    # the report wrote the round's results into the model card on the Hub
    card = fake_hub.files("acme/demo-duo-adapter", rev="round-1")["README.md"].decode()
    meta = yaml.safe_load(card.split("---\n", 2)[1])
    [entry] = meta["model-index"][0]["results"]
    assert [m["type"] for m in entry["metrics"]] == ["similarity", "precision", "embedding"]
    assert entry["dataset"]["revision"] == data["round-1/evaluate"]
    assert entry["source"]["url"].startswith("http") and f"/blob/{fake_github.branches[BRANCH]}/" in \
        entry["source"]["url"]
