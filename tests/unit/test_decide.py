"""decide: hand-computed pass / continue / stop-budget / stop-plateau / stop-no-service cases, the stored artifact and the CLI's one-line errors.

Config (tests/round_artifacts.py): synthesize 1000 doubling; budget 3 rounds, 7000 synthetic rows, $5.
"""

import json

import pytest

from pipeline.cli import main
from pipeline.stages import decide
from pipeline.stats.decision_facts import decide_round
from pipeline.stats.decision_text import record
from pipeline.store import open_store
from tests.round_artifacts import build_prepare, build_round, make_config, put


def decision(cfg, store, round_no: int) -> dict:
    """The decision after ``round_no`` as ``decide`` stores it (``decision.json``)."""
    return record(decide_round(cfg, store, round_no))


@pytest.fixture
def setup(tmp_path):
    def make(overrides=None):
        cfg = make_config(tmp_path, overrides)
        store = open_store(cfg)
        build_prepare(store, cost=0.0)
        return cfg, store
    return make


def test_pass_when_the_verdict_passes(setup):
    cfg, store = setup()
    build_round(store, 1, sim=93, prec=91)
    d = decision(cfg, store, 1)
    assert d["decision"] == "pass"
    assert d["next_round"] is None and d["next_samples"] is None
    assert "similarity mean = 93 (needs >= 90)" in d["reason"]


def test_continue_doubles_the_samples_when_budget_allows(setup):
    cfg, store = setup()
    build_round(store, 1, kept=1000, synth_cost=0.5, judge_cost=0.25)
    d = decision(cfg, store, 1)
    assert d == {"decision": "continue", "round": 1, "next_round": 2, "next_samples": 2000, "spend_usd": 0.75,
                 "synthetic_total": 1000, "reason": d["reason"], "evidence": d["evidence"],
                 "conditions": d["conditions"], "limits": [], "best": d["best"], "synthesis": d["synthesis"]}
    assert (d["best"]["round"], d["best"]["before"], d["synthesis"]["kept"]) == (1, None, 1000)
    assert "similarity mean = 71.2 (needs >= 90)" in d["reason"] and "precision mean = 80 (needs >= 90)" in d["reason"]


def test_synthetic_limit_is_inclusive(setup):
    # 1000 + 2000 so far, round 3 adds 4000: exactly 7000 is allowed, 6999 is not.
    cfg, store = setup()
    build_round(store, 1, kept=1000)
    build_round(store, 2, kept=2000)
    assert decision(cfg, store, 2)["decision"] == "continue"
    cfg2 = make_config(store.root.parent.parent, ["budget.max_synthetic_samples=6999"])
    d = decision(cfg2, store, 2)
    assert d["decision"] == "stop-budget"
    assert "budget.max_synthetic_samples=6999" in d["reason"]
    assert "max_rounds" not in d["reason"] and "max_spend_usd" not in d["reason"]


def test_stop_when_rounds_are_used_up(setup):
    cfg, store = setup(["budget.max_rounds=2", "budget.max_synthetic_samples=100000"])
    build_round(store, 1, kept=10)
    build_round(store, 2, kept=10)
    d = decision(cfg, store, 2)
    assert d["decision"] == "stop-budget"
    assert "2 of budget.max_rounds=2 rounds done" in d["reason"]
    assert d["next_round"] is None


def test_stop_when_spend_reaches_the_limit(setup):
    # 3.0 + 1.5 + 0.5 = 5.0 spent, which reaches max_spend_usd=5 (spend must stay below it to go on).
    cfg, store = setup()
    build_round(store, 1, kept=10, synth_cost=3.0, judge_cost=1.5)

    put(store, "infer", 1, {"answers.jsonl": []}, cost=0.5)
    d = decision(cfg, store, 1)
    assert d["spend_usd"] == pytest.approx(5.0)
    assert d["decision"] == "stop-budget"
    assert "spent $5.00 of budget.max_spend_usd=$5.00" in d["reason"]
    assert "max_rounds" not in d["reason"] and "max_synthetic" not in d["reason"]


def test_reason_names_every_limit_reached(setup):
    cfg, store = setup(["budget.max_rounds=1", "budget.max_spend_usd=0.1", "budget.max_synthetic_samples=1500"])
    build_round(store, 1, kept=1000)
    reason = decision(cfg, store, 1)["reason"]
    for limit in ("max_rounds=1", "max_synthetic_samples=1500", "max_spend_usd=$0.10"):
        assert limit in reason


def test_run_writes_the_artifact_and_skips_when_unchanged(setup):
    cfg, store = setup()
    build_round(store, 1)
    m1 = decide.run(cfg, store, 1)
    doc = json.loads((store.open("round-1/decide") / "decision.json").read_text())
    assert set(doc) == {"decision", "reason", "round", "next_round", "next_samples", "spend_usd", "synthetic_total",
                        "evidence", "conditions", "limits", "best", "synthesis"}
    assert doc["decision"] == "continue"
    m2 = decide.run(cfg, store, 1)
    assert m2.timings["finished"] == m1.timings["finished"]
    cfg_tight = make_config(store.root.parent.parent, ["budget.max_rounds=1"])
    m3 = decide.run(cfg_tight, store, 1)  # a different budget gives a different decision: rewritten
    assert m3.extra["decision"] == "stop-budget"


def test_cli_without_evaluation_is_one_line_error(tmp_path, capsys):
    cfg = make_config(tmp_path)
    build_prepare(open_store(cfg))
    assert main(["decide", str(cfg.source_path), "--round", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "round-1/evaluate" in err[0]


def test_cli_bad_metrics_file_is_named(setup, capsys):
    cfg, store = setup()
    build_round(store, 1)
    (store.open("round-1/evaluate") / "metrics.json").write_text("{not json")
    assert main(["decide", str(cfg.source_path)]) == 1
    err = capsys.readouterr().err
    assert "metrics.json" in err and "Traceback" not in err


def test_cli_prints_and_sets_outputs(setup, tmp_path, monkeypatch, capsys):
    cfg, store = setup()
    build_round(store, 1)
    out = tmp_path / "gh_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    assert main(["decide", str(cfg.source_path)]) == 0
    assert "decide round 1: continue" in capsys.readouterr().out
    lines = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert lines["decision"] == "continue" and lines["next-round"] == "2" and lines["next-samples"] == "2000"
    assert lines["dispatched"] == "false" and lines["artifact"] == "round-1/decide"


def test_no_synthesis_service_stops_instead_of_retraining_on_the_same_data(tmp_path):
    from tests.round_artifacts import CONFIG

    cfg = make_config(tmp_path, text=CONFIG.replace("  synthesize: {provider: openai, model: gpt-4o-mini}\n", ""))
    assert cfg.service.synthesize is None
    store = open_store(cfg)
    build_prepare(store)
    build_round(store, 1, synthesize=False)
    d = decision(cfg, store, 1)
    assert d["decision"] == "stop-no-service" and "service.synthesize" in d["reason"]
    from pipeline.stages import report

    report.run(cfg, store, 1)
    text = (cfg.resolve("reports") / "demo" / "round-1" / "report.md").read_text()
    assert "synthesis was skipped because no service LLM is configured" in text


def _flat_round(store, k: int, ci_low: float, verdict: str = "fail") -> None:
    """Round k's evaluation: failing, with a paired gain over the round before whose CI starts at ``ci_low``."""
    gain = {"diff": ci_low + 0.01, "ci_low": ci_low, "ci_high": ci_low + 0.02, "n": 40, "sd": 0.03,
            "change": "better" if ci_low > 0 else "no detectable change"}
    put(store, "evaluate", k, {"metrics.json": {
        "round": k, "previous_round": k - 1, "verdict": verdict, "rule_kind": "offline", "decision_metric": "rougeL",
        "rule": [{"metric": "rougeL", "stat": "mean", "min": 0.5, "value": 0.2, "ok": False}],
        "metrics": {"rougeL": {"mean": 0.2, "ci_low": 0.18, "ci_high": 0.22, "n": 40}},
        "vs_baseline": {"rougeL": gain}, "vs_previous": {"rougeL": gain}}})


def test_stop_plateau_after_patience_rounds_without_a_significant_gain(setup):
    cfg, store = setup(["budget.max_rounds=9", "budget.max_synthetic_samples=100000"])
    _flat_round(store, 1, 0.02)   # round 1 beats the baseline
    assert decision(cfg, store, 1)["decision"] == "continue"
    _flat_round(store, 2, -0.01)  # round 2: no detectable gain over round 1 (one flat round < patience 2)
    assert decision(cfg, store, 2)["decision"] == "continue"
    _flat_round(store, 3, -0.02)  # round 3: flat again -> 2 flat rounds in a row
    d = decision(cfg, store, 3)
    assert d["decision"] == "stop-plateau" and "rounds 2, 3" in d["reason"] and "budget.patience=2" in d["reason"]
    assert d["evidence"]["metric"] == "rougeL" and d["evidence"]["vs_previous"]["ci_low"] == -0.02
    assert decision(make_config(store.root.parent.parent, ["budget.patience=3", "budget.max_rounds=9",
                                                           "budget.max_synthetic_samples=100000"]),
                    store, 3)["decision"] == "continue"  # round 1's gain breaks a run of 3
