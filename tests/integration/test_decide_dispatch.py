"""``duo decide --dispatch`` against the fake GitHub: one dispatch of round N+1 with doubled samples when the round
fails within budget, none when it passes or the budget is spent, and a decision comment on the round's PR."""

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.store import open_store
from tests.fakes.github_server import gh_error
from tests.round_artifacts import build_prepare, build_round, make_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def task(tmp_path, monkeypatch, fake_github):
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "gh_output"))

    def make(overrides=None, **round_kw):
        cfg = make_config(tmp_path / "tasks" / "demo", overrides)  # config path in the repo: tasks/demo/duo.yaml
        store = open_store(cfg)
        build_prepare(store)
        build_round(store, 1, **round_kw)
        return cfg
    return make


def outputs(tmp_path) -> dict:
    return dict(line.split("=", 1) for line in (tmp_path / "gh_output").read_text().splitlines())


def test_failing_round_dispatches_next_round_once(task, fake_github, tmp_path, capsys):
    cfg = task(sim=71.2, prec=80, kept=1000)
    assert main(["decide", str(cfg.source_path), "--dispatch"]) == 0
    assert fake_github.dispatches == [{"workflow": "round.yml", "ref": "main", "inputs": {
        "config": "tasks/demo/duo.yaml", "round": "2", "samples": "2000", "dry-run": "false"}}]
    out = outputs(tmp_path)
    assert (out["decision"], out["next-round"], out["next-samples"], out["dispatched"]) == ("continue", "2", "2000",
                                                                                            "true")
    assert "dispatched round.yml: round 2, 2000 samples" in capsys.readouterr().out
    assert not fake_github.comments  # no PR for this round: nothing to comment on


@pytest.mark.parametrize("overrides,round_kw,decision,words", [
    ([], {"sim": 95, "prec": 92}, "pass", "Stop: the student passes"),
    (["budget.max_rounds=1"], {"sim": 50, "prec": 50}, "stop-budget", "budget.max_rounds=1"),
    (["budget.max_spend_usd=0.5"], {"sim": 50, "prec": 50, "synth_cost": 0.4, "judge_cost": 0.2}, "stop-budget",
     "budget.max_spend_usd=$0.50"),
])
def test_no_dispatch_when_passing_or_out_of_budget(task, fake_github, tmp_path, overrides, round_kw, decision, words):
    cfg = task(overrides, **round_kw)
    sets = [arg for item in overrides for arg in ("--set", item)]
    assert main(["report", str(cfg.source_path), *sets, "--open-pr"]) == 0  # the round's PR, to be commented on
    assert main(["decide", str(cfg.source_path), *sets, "--dispatch"]) == 0
    assert fake_github.dispatches == []
    assert not fake_github.requests("POST", "/dispatches")
    out = outputs(tmp_path)
    assert out["decision"] == decision and out["dispatched"] == "false" and out["next-round"] == ""
    [comment] = fake_github.comments
    assert comment["issue"] == 1 and "<!-- duo-decide task=demo round=1 -->" in comment["body"]
    assert "Stop:" in comment["body"] and words in comment["body"]


def test_comment_on_the_round_pr_is_updated_on_rerun(task, fake_github):
    cfg = task(sim=71.2, prec=80)
    assert main(["report", str(cfg.source_path), "--open-pr"]) == 0
    assert main(["decide", str(cfg.source_path), "--dispatch"]) == 0
    [comment] = fake_github.comments
    assert "Continue with another round" in comment["body"] and "Round 2 (2000 synthetic samples) was dispatched" \
        in comment["body"]
    assert main(["decide", str(cfg.source_path), "--dispatch"]) == 0
    assert len(fake_github.comments) == 1  # edited, not posted again
    assert len(fake_github.requests("PATCH", r"/issues/comments/\d+$")) == 1
    assert len(fake_github.dispatches) == 1  # a rerun of the job does not start round 2 twice


def test_force_dispatches_again(task, fake_github, tmp_path, capsys):
    cfg = task()
    assert main(["decide", str(cfg.source_path), "--dispatch"]) == 0
    assert main(["decide", str(cfg.source_path), "--dispatch"]) == 0
    assert "already dispatched" in capsys.readouterr().out
    assert outputs(tmp_path)["dispatched"] == "true"
    assert len(fake_github.dispatches) == 1
    assert main(["decide", str(cfg.source_path), "--dispatch", "--force"]) == 0
    assert len(fake_github.dispatches) == 2


def test_a_rerun_after_a_dispatch_says_already_dispatched_with_its_run(task, fake_github, tmp_path, capsys,
                                                                       monkeypatch):
    """Regression (issue 19): a decide rerun printed "Dispatched round 2." though it dispatched nothing."""
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    cfg = task()
    assert main(["report", str(cfg.source_path), "--open-pr"]) == 0
    assert main(["decide", str(cfg.source_path), "--dispatch"]) == 0
    out = capsys.readouterr().out
    assert "dispatched round.yml: round 2, 2000 samples" in out and "Dispatched round 2 (round.yml on main)." in out
    summary.write_text("")
    assert main(["decide", str(cfg.source_path), "--dispatch"]) == 0
    assert len(fake_github.dispatches) == 1
    [run] = fake_github.runs
    url = f"{fake_github.url}/acme/duo-demo/actions/runs/{run['id']}"
    out = capsys.readouterr().out
    assert "Dispatched round 2" not in out + summary.read_text()
    assert f"round 2 was already dispatched (run {run['number']}: {url}); use --force to dispatch it again" in out
    assert (f"Round 2 was already dispatched (run {run['number']}: {url}); nothing was dispatched now."
            in summary.read_text())
    assert outputs(tmp_path)["dispatched"] == "true"  # round 2 is dispatched: by the first decide
    [comment] = fake_github.comments
    assert f"Round 2 (2000 synthetic samples) was dispatched (run {run['number']}: {url})." in comment["body"]
    assert dispatch_extra(cfg)["dispatched"]["run_number"] == run["number"]  # found once, then kept


def test_dispatch_runs_on_the_current_branch_in_actions(task, fake_github, monkeypatch):
    cfg = task()
    fake_github.branches["feature/x"] = fake_github.branches["main"]
    monkeypatch.setenv("GITHUB_REF", "refs/heads/feature/x")
    assert main(["decide", str(cfg.source_path), "--dispatch"]) == 0
    assert [d["ref"] for d in fake_github.dispatches] == ["feature/x"]


def test_dispatch_refused_by_github_is_one_line(task, fake_github, capsys):
    cfg = task()
    fake_github.workflows = {}  # round.yml missing on the default branch
    assert main(["decide", str(cfg.source_path), "--dispatch"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dispatch workflow round.yml" in err[0] and "404" in err[0]


def test_without_dispatch_flag_nothing_reaches_github(task, fake_github):
    cfg = task()
    assert main(["decide", str(cfg.source_path)]) == 0
    assert fake_github.log == []


def test_comment_refused_is_a_warning_after_the_dispatch(task, fake_github, capsys):
    cfg = task()
    assert main(["report", str(cfg.source_path), "--open-pr"]) == 0
    fake_github.add_hook(lambda req: gh_error(403, "Resource not accessible by integration")
                         if "/comments" in req.path else None)  # a job token without pull-requests: write
    assert main(["decide", str(cfg.source_path), "--dispatch"]) == 0
    assert len(fake_github.dispatches) == 1
    err = capsys.readouterr().err
    assert "warning: no decision comment" in err and "403" in err


# -- issue 10, item 6: idempotent dispatch ---------------------------------------------------------------------------

def dispatch_extra(cfg) -> dict:
    return open_store(cfg).manifest("round-1/decide").extra


def forget_dispatched(cfg) -> None:
    """What a kill right after the dispatch leaves: the marker, but no ``dispatched`` record."""
    store = open_store(cfg)
    m = store.manifest("round-1/decide")
    decision = (store.open("round-1/decide") / "decision.json").read_bytes()
    m.extra = {k: v for k, v in m.extra.items() if k != "dispatched"}
    with store.write("round-1/decide") as folder:
        (folder / "decision.json").write_bytes(decision)
        m.write(folder)


def test_run_name_of_round_yml_is_what_decide_looks_for():
    from pipeline.github import run_title
    from tests.fakes.github_server import render_run_name, round_workflow

    inputs = {"config": "tasks/demo/duo.yaml", "round": "2", "samples": "2000", "dry-run": "false"}
    assert render_run_name(round_workflow(), inputs) == run_title(inputs) == "duo round 2 (tasks/demo/duo.yaml)"


def test_dispatch_is_listed_as_a_run_titled_with_the_round(task, fake_github):
    cfg = task()
    assert main(["decide", str(cfg.source_path), "--dispatch"]) == 0
    [run] = fake_github.runs
    assert run["title"] == "duo round 2 (tasks/demo/duo.yaml)" and run["event"] == "workflow_dispatch"
    extra = dispatch_extra(cfg)
    assert extra["dispatching"]["round"] == 2 and extra["dispatched"]["inputs"]["round"] == "2"
    # The marker went to the store before the dispatch reached GitHub: runs were listed first, then dispatched.
    calls = [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in fake_github.log if "/actions/" in r["path"]]
    assert calls.index(("GET", "runs")) < calls.index(("POST", "dispatches"))


def test_kill_after_dispatch_then_rerun_dispatches_nothing_more(task, fake_github, capsys):
    """Regression (issue 10): decide killed after the dispatch reached GitHub dispatched round 2 again on rerun."""
    cfg = task()
    assert main(["decide", str(cfg.source_path), "--dispatch"]) == 0
    forget_dispatched(cfg)
    assert "dispatched" not in dispatch_extra(cfg) and "dispatching" in dispatch_extra(cfg)
    capsys.readouterr()
    assert main(["decide", str(cfg.source_path), "--dispatch"]) == 0
    assert len(fake_github.dispatches) == 1
    print(f"kill after dispatch, rerun: {len(fake_github.dispatches) - 1} more dispatches")
    out = capsys.readouterr().out
    assert "round 2 was already dispatched (run 1: http" in out and "/actions/runs/" in out
    assert dispatch_extra(cfg)["dispatched"]["run"].endswith(f"/actions/runs/{fake_github.runs[0]['id']}")


def test_a_remade_decide_artifact_keeps_its_dispatch_record(task, fake_github, monkeypatch, capsys):
    """A decide artifact remade with the same decision (a new duo's fingerprint, a changed budget key) keeps the
    record of the round it dispatched, even after GitHub's runs list has aged past the dispatch window."""
    cfg = task()
    assert main(["decide", str(cfg.source_path), "--dispatch"]) == 0
    before = dispatch_extra(cfg)["dispatched"]
    monkeypatch.setattr("pipeline.dispatch.DISPATCH_MARGIN", __import__("datetime").timedelta(0))
    fake_github.runs.clear()  # the run is no longer listed: only the stored record can stop a second dispatch
    assert main(["decide", str(cfg.source_path), "--dispatch", "--set", "budget.patience=3"]) == 0
    assert len(fake_github.dispatches) == 1 and dispatch_extra(cfg)["dispatched"] == before
    assert "round 2 was already dispatched" in capsys.readouterr().out


def test_kill_after_dispatch_on_a_fresh_runner_dispatches_nothing_more(task, fake_github):
    """The marker is lost too (a fresh machine whose store never got it): the runs list alone stops a second one."""
    cfg = task()
    assert main(["decide", str(cfg.source_path), "--dispatch"]) == 0
    shutil.rmtree(open_store(cfg).local_path("round-1/decide"))
    assert main(["decide", str(cfg.source_path), "--dispatch"]) == 0
    assert len(fake_github.dispatches) == 1
    assert main(["decide", str(cfg.source_path), "--dispatch", "--force"]) == 0  # the way to start it again
    assert len(fake_github.dispatches) == 2


def test_killed_before_the_dispatch_reached_github_dispatches_on_rerun(task, fake_github, monkeypatch):
    cfg = task()
    fake_github.add_hook(lambda req: gh_error(502, "Server Error") if req.path.endswith("/dispatches") else None)
    assert main(["decide", str(cfg.source_path), "--dispatch"]) == 1  # marker written, dispatch lost
    assert "dispatching" in dispatch_extra(cfg) and fake_github.dispatches == []
    fake_github.hooks.clear()
    monkeypatch.setattr("pipeline.dispatch.LIST_LAG_S", 0.0)
    assert main(["decide", str(cfg.source_path), "--dispatch"]) == 0
    assert len(fake_github.dispatches) == 1


def test_two_concurrent_decides_dispatch_once(task, fake_github, capsys):
    """Regression (issue 10): two overlapping decide runs dispatched round 2 twice."""
    cfg = task()
    assert main(["decide", str(cfg.source_path)]) == 0  # the decision, without dispatching
    fake_github.set_faults(latency_s=0.2, only_paths=[r"/runs$", r"/dispatches$"])  # widen the race
    codes = []

    def decide():
        codes.append(main(["decide", str(cfg.source_path), "--dispatch"]))
    threads = [threading.Thread(target=decide) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [0, 0]
    print(f"two concurrent decides (threads): {len(fake_github.dispatches)} dispatch")
    assert len(fake_github.dispatches) == 1


def test_two_concurrent_decide_processes_dispatch_once(task, fake_github, tmp_path):
    cfg = task()
    assert main(["decide", str(cfg.source_path)]) == 0
    fake_github.set_faults(latency_s=0.3, only_paths=[r"/runs$", r"/dispatches$"])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "pipeline", "decide", str(cfg.source_path), "--dispatch"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    print(f"two concurrent decides (processes): {len(fake_github.dispatches)} dispatch; exit codes "
          f"{[rc for rc, _, _ in results]}")
    assert len(fake_github.dispatches) == 1
    for rc, out, err in results:  # the other one waited its turn or was turned away by the task lock
        assert rc == 0 or (rc == 1 and len(err.strip().splitlines()) == 1 and "is being worked on by" in err), err


def test_require_approval_holds_the_next_round_until_the_pr_is_approved(task, fake_github, tmp_path, capsys):
    """Issue 12: with report.require_approval, decide comments what it waits for; an approving review releases it."""
    sets = ["--set", "report.require_approval=true"]
    cfg = task(["report.require_approval=true"], sim=71.2, prec=80)
    assert main(["report", str(cfg.source_path), *sets, "--open-pr"]) == 0
    assert main(["decide", str(cfg.source_path), *sets, "--dispatch"]) == 0
    assert fake_github.dispatches == [] and outputs(tmp_path)["dispatched"] == "false"
    assert "waiting for an approving review of" in capsys.readouterr().out
    [comment] = fake_github.comments
    assert "is not dispatched yet: waiting for an approving review" in comment["body"]

    fake_github.add_review(1, "alice", "CHANGES_REQUESTED")
    fake_github.add_review(1, "bob", "APPROVED")
    assert main(["decide", str(cfg.source_path), *sets, "--dispatch"]) == 0
    assert fake_github.dispatches == []  # alice's change request still stands

    fake_github.add_review(1, "alice", "APPROVED")  # the pull_request_review event re-runs decide
    assert main(["decide", str(cfg.source_path), *sets, "--dispatch"]) == 0
    assert [d["inputs"]["round"] for d in fake_github.dispatches] == ["2"]
    assert len(fake_github.comments) == 1 and "was dispatched" in fake_github.comments[0]["body"]


def test_require_approval_never_dispatches_past_a_rejected_round(task, fake_github, tmp_path, capsys):
    sets = ["--set", "report.require_approval=true"]
    cfg = task(["report.require_approval=true"], sim=71.2, prec=80)
    assert main(["report", str(cfg.source_path), *sets, "--open-pr"]) == 0
    fake_github.close_pull(1, merged=False)
    assert main(["decide", str(cfg.source_path), *sets, "--dispatch"]) == 0
    assert fake_github.dispatches == []
    assert "round 1 was rejected in review" in capsys.readouterr().out
    # Without require_approval the old behaviour stands: the round is dispatched as soon as decide runs.
    assert main(["decide", str(cfg.source_path), "--dispatch"]) == 0
    assert len(fake_github.dispatches) == 1
