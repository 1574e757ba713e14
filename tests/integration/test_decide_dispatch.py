"""``duo decide --dispatch`` against the fake GitHub: one dispatch of round N+1 with doubled samples when the round
fails within budget, none when it passes or the budget is spent, and a decision comment on the round's PR."""

import pytest

from pipeline.cli import main
from pipeline.store import open_store
from tests.fakes.github_server import gh_error
from tests.round_artifacts import build_prepare, build_round, make_config


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
