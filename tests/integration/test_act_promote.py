"""End to end (issue 12): promote.yml runs under act (host mode) on a simulated ``pull_request`` closed event.

The fake Hub holds two rounds' adapters (branches ``round-1`` and ``round-2`` of the model repo, written in-process
through the Hub store); act then runs promote.yml with an event whose PR branch is ``duo/act-demo/round-<N>``:
merged moves the ``production`` tag to that round's adapter commit and records the promotion in the dataset repo;
closed unmerged moves no tag and records the round as rejected. An approving review (``pull_request_review``) runs
decide again, which dispatches the round that ``report.require_approval`` held back.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config
from pipeline.store import open_store
from tests.fakes.github_server import TOKEN as GITHUB_TOKEN
from tests.fakes.hub_server import FAKE_TOKEN, FAKE_USER
from tests.integration.test_act_round import ACT, STUBS, TASK, make_repo, pinned_actions
from tests.round_artifacts import build_prepare, build_round, put

pytestmark = [pytest.mark.slow, pytest.mark.skipif(ACT is None, reason="act is not installed")]
MODEL_REPO = f"{FAKE_USER}/{TASK}-duo-adapter"
DATA_REPO = f"{FAKE_USER}/{TASK}-duo-data"


def event(round_no: int, merged: bool, label: str = "duo-report") -> dict:
    number = 10 + round_no
    return {"action": "closed", "number": number,
            "pull_request": {"number": number, "merged": merged, "state": "closed",
                             "head": {"ref": f"duo/{TASK}/round-{round_no}"}, "base": {"ref": "main"},
                             "body": f"report\n<!-- duo-report task={TASK} round={round_no} -->\n",
                             "html_url": f"https://github.com/acme/duo-demo/pull/{number}",
                             "labels": [{"name": label}]},
            "repository": {"full_name": "acme/duo-demo", "name": "duo-demo", "owner": {"login": "acme"}}}


def run_promote(repo: Path, home: Path, fake_hub, payload: dict, fake_github=None) -> tuple[int, str]:
    path = home / "event.json"
    path.write_text(json.dumps(payload))
    kind = "pull_request_review" if "review" in payload else "pull_request"
    argv = [ACT, kind, "-e", str(path), "-W", ".github/workflows/promote.yml",
            "-P", "ubuntu-latest=-self-hosted", "-s", f"HF_TOKEN={FAKE_TOKEN}",
            "--var", "DUO_SKIP_INSTALL=true", "--var", f"DUO_HF_ENDPOINT={fake_hub.url}"]
    if fake_github is not None:
        argv += ["-s", f"GITHUB_TOKEN={GITHUB_TOKEN}", "--var", f"DUO_GITHUB_API_URL={fake_github.url}"]
    for ref in sorted(pinned_actions()):
        name = ref.split("@")[0].split("/")[1]
        stub = STUBS / ("checkout-workdir" if name == "checkout" else name)  # promote.yml checks out the base ref
        argv += ["--local-repository", f"{ref}={stub}"]
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(home),
           "LANG": "C.UTF-8", "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
           "ACT_TEST_REPO": str(repo)}
    out = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=600, check=False)
    log = out.stdout + out.stderr
    (home / "act.log").write_text(log)
    return out.returncode, log


@pytest.fixture
def hub_rounds(tmp_path, tiny_model_dir, fake_hub):
    """The act repository and a fake Hub whose model repo holds the adapters of rounds 1 and 2."""
    repo = make_repo(tmp_path, tiny_model_dir, min_similarity=90)
    cfg = load_config(repo / "duo.yaml", ["store.kind=hub", f"store.path={tmp_path / 'cache'}"])
    hub = open_store(cfg)
    hub.retry_delays = (0.0,)
    for n in (1, 2):
        put(hub, "finetune", n, {"adapter/adapter_config.json": {"r": 4, "round": n}, "README.md": "card"})
    model = fake_hub.repo(MODEL_REPO, "model")
    home = tmp_path / "home"
    home.mkdir()
    return repo, home, model, {n: model.branches[f"round-{n}"] for n in (1, 2)}


def test_merged_report_pr_moves_the_production_tag(hub_rounds, fake_hub):
    repo, home, model, heads = hub_rounds
    rc, log = run_promote(repo, home, fake_hub, event(2, merged=True))
    assert rc == 0, f"act failed (log in {home / 'act.log'}):\n{log[-6000:]}"
    assert re.search(r"\[promote/promote\s*\]\s+🏁\s+Job succeeded", log)
    assert model.tags["production"] == heads[2]
    record = json.loads(fake_hub.files(DATA_REPO, "dataset")["round-2/promote/promotion.json"])
    assert (record["status"], record["commit"], record["round"]) == ("promoted", heads[2], 2)
    assert record["pr_url"] == "https://github.com/acme/duo-demo/pull/12"


def test_rejected_report_pr_moves_no_tag(hub_rounds, fake_hub):
    repo, home, model, heads = hub_rounds
    rc, log = run_promote(repo, home, fake_hub, event(1, merged=True))
    assert rc == 0, log[-6000:]
    assert model.tags["production"] == heads[1]
    rc, log = run_promote(repo, home, fake_hub, event(2, merged=False))
    assert rc == 0, f"act failed (log in {home / 'act.log'}):\n{log[-6000:]}"
    assert model.tags["production"] == heads[1]  # unchanged by the rejection
    record = json.loads(fake_hub.files(DATA_REPO, "dataset")["round-2/promote/promotion.json"])
    assert (record["status"], record["commit"]) == ("rejected", None)
    # A PR without the duo-report label is none of promote.yml's business.
    rc, log = run_promote(repo, home, fake_hub, event(1, merged=False, label="docs"))
    assert rc == 0 and "Job succeeded" not in log
    assert json.loads(fake_hub.files(DATA_REPO, "dataset")["round-1/promote/promotion.json"])["status"] == "promoted"


def test_an_approving_review_releases_the_next_round(tmp_path, tiny_model_dir, fake_hub, fake_github):
    """report.require_approval: round 1's decide held round 2 back; the review event's job dispatches it."""
    repo = make_repo(tmp_path, tiny_model_dir, min_similarity=90)
    doc = yaml.safe_load((repo / "duo.yaml").read_text())
    doc["report"] = {"require_approval": True}
    (repo / "duo.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))  # the stub copies the working tree
    cfg = load_config(repo / "duo.yaml", ["store.kind=hub", f"store.path={tmp_path / 'cache'}"])
    hub = open_store(cfg)
    hub.retry_delays = (0.0,)
    build_prepare(hub)
    build_round(hub, 1, sim=50, prec=50, kept=3)  # a failing round 1 that decide continues from
    branch = f"duo/{TASK}/round-1"
    fake_github.labels["duo-report"] = {"id": 1, "name": "duo-report", "color": "0e8a16", "description": None,
                                        "url": f"{fake_github.url}/repos/acme/duo-demo/labels/duo-report"}
    fake_github.pulls.append({"number": 1, "title": "round 1", "body": "report", "head": branch, "base": "main",
                              "state": "open", "labels": ["duo-report"]})
    fake_github.add_review(1, "alice", "APPROVED")
    home = tmp_path / "home"
    home.mkdir()
    payload = {"action": "submitted", "review": {"state": "approved", "user": {"login": "alice"}},
               "pull_request": event(1, merged=False)["pull_request"] | {"number": 1, "state": "open"},
               "repository": event(1, merged=False)["repository"]}
    rc, log = run_promote(repo, home, fake_hub, payload, fake_github)
    assert rc == 0, f"act failed (log in {home / 'act.log'}):\n{log[-6000:]}"
    assert re.search(r"\[promote/approved\s*\]\s+🏁\s+Job succeeded", log)
    assert [(d["workflow"], d["inputs"]["round"], d["inputs"]["config"]) for d in fake_github.dispatches] == [
        ("round.yml", "2", "duo.yaml")]
    assert len(fake_github.comments) == 1 and "was dispatched" in fake_github.comments[0]["body"]
