"""``duo promote`` (issue 12): a merged report PR promotes its round (a ``production`` tag on the fake Hub at the
round's adapter commit, a record in the store); a PR closed unmerged marks the round rejected; ``duo pull`` and
``duo export`` default to the promoted round, then the best evaluated one, then the latest, skipping
rejected ones."""

from __future__ import annotations

import json

import pytest

from pipeline.artifacts.promote import choose_round, promotions, read_promotion
from pipeline.cli import main
from pipeline.stages.export import pick
from pipeline.stats.best import adapter_round
from pipeline.store import open_store
from tests.fakes.hub_server import FAKE_USER
from tests.round_artifacts import CONFIG, build_prepare, build_round, make_config, put

PASS = {"sim": 95, "prec": 92}
FAIL = {"sim": 50, "prec": 50}


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    path = tmp_path / "gh_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(path))
    return lambda: dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def local_task(tmp_path, *verdicts):
    cfg = make_config(tmp_path / "task")
    store = open_store(cfg)
    build_prepare(store)
    for n, kw in enumerate(verdicts, start=1):
        build_round(store, n, **kw)
    return cfg, store


def test_pull_takes_the_best_round_until_one_is_promoted(tmp_path, outputs, capsys):
    cfg, store = local_task(tmp_path, PASS, FAIL, FAIL)
    assert adapter_round(cfg, store)[:2] == (1, None)  # round 1 scored highest; 2 and 3 are later but lower
    assert choose_round(store)[:2] == (3, None)  # without a best round: the latest
    assert main(["promote", str(cfg.source_path), "--merged", "--pr-branch", "duo/demo/round-3",
                 "--pr-url", "https://github.com/acme/duo-demo/pull/3"]) == 0
    assert "promote round 3: promoted to production" in capsys.readouterr().out
    assert (outputs()["status"], outputs()["round"]) == ("promoted", "3")
    record = read_promotion(store, 3)
    assert record["status"] == "promoted" and record["pr_url"].endswith("/pull/3") and record["commit"] is None
    round_no, _, why = adapter_round(cfg, store)
    assert round_no == 3 and why.startswith("promoted to production")
    assert main(["pull", str(cfg.source_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "round 3: promoted to production when its report PR was merged" and "adapter: round 3" in out[1]


def test_rejected_rounds_are_skipped(tmp_path, outputs, capsys):
    cfg, store = local_task(tmp_path, FAIL, {"sim": 60, "prec": 60})
    assert adapter_round(cfg, store)[0] == 2  # round 2 scored higher and no worse on the same prompts
    assert main(["promote", str(cfg.source_path), "--rejected", "--pr-body",
                 "report\n<!-- duo-report task=demo round=2 -->\n"]) == 0
    assert outputs()["status"] == "rejected"
    assert promotions(store)[2]["status"] == "rejected"
    round_no, _, why = adapter_round(cfg, store)
    assert round_no == 1 and "rejected in review: 2" in why and why.startswith("the best evaluated round")
    with pytest.raises(Exception, match="no round is promoted"):
        pick(cfg, store, None, promoted=True)


@pytest.mark.parametrize("argv, words", [
    (["--merged", "--rejected", "--round", "1"], "exactly one of --merged"),
    (["--merged"], "cannot tell the round"),
    (["--merged", "--pr-branch", "duo/other/round-1"], "names task 'other'"),
    (["--merged", "--round", "5"], "round 5 has no adapter"),
])
def test_promote_usage_errors_are_one_line(tmp_path, capsys, argv, words):
    cfg, _ = local_task(tmp_path, FAIL)
    assert main(["promote", str(cfg.source_path), *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1


def test_merge_moves_the_production_tag_on_the_hub_and_rejection_does_not(tmp_path, fake_hub, outputs, capsys):
    cfg = make_config(tmp_path / "task", text=CONFIG + f"store: {{kind: hub, namespace: {FAKE_USER}}}\n")
    hub = open_store(cfg)
    hub.retry_delays = (0.0,)
    for n in (1, 2):
        put(hub, "finetune", n, {"adapter/adapter_config.json": {"r": 8 * n}, "README.md": "card"})
    model = fake_hub.repo(f"{FAKE_USER}/demo-duo-adapter", "model")
    heads = {n: model.branches[f"round-{n}"] for n in (1, 2)}
    assert heads[1] != heads[2]

    assert main(["promote", str(cfg.source_path), "--merged", "--pr-branch", "duo/demo/round-1"]) == 0
    assert model.tags["production"] == heads[1] and outputs()["commit"] == heads[1]
    assert main(["promote", str(cfg.source_path), "--merged", "--round", "2"]) == 0
    assert model.tags["production"] == heads[2]  # moved to the newly merged round
    assert main(["promote", str(cfg.source_path), "--rejected", "--pr-branch", "duo/demo/round-1"]) == 0
    assert model.tags["production"] == heads[2]  # a rejection moves no tag
    capsys.readouterr()

    # The dataset repo records it: round-N/promote/promotion.json on main.
    data = fake_hub.files(f"{FAKE_USER}/demo-duo-data", "dataset")
    assert json.loads(data["round-2/promote/promotion.json"])["commit"] == heads[2]
    assert json.loads(data["round-1/promote/promotion.json"])["status"] == "rejected"

    # pull and export name the promoted round by its commit.
    fresh = open_store(cfg)
    assert choose_round(fresh)[:2] == (2, heads[2])
    assert main(["export", str(cfg.source_path), "--promoted", "--to", "vllm"]) == 0
    out = capsys.readouterr().out
    assert f"hf download {FAKE_USER}/demo-duo-adapter --revision {heads[2]} --local-dir adapters/demo-round-2" in out
    assert "vllm serve HuggingFaceTB/SmolLM2-135M-Instruct --enable-lora --max-lora-rank 16 --lora-modules" in out
    module = json.loads(out.split("--lora-modules '", 1)[1].split("'", 1)[0])
    assert module == {"name": "demo-round-2", "path": "adapters/demo-round-2",
                      "base_model_name": "HuggingFaceTB/SmolLM2-135M-Instruct"}
    assert 'base_url="http://localhost:8000/v1"' in out and 'model="demo-round-2"' in out
