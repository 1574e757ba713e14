"""The decision as a pure function of its facts (``pipeline.stats.decision``) and the words rendered from it
(``pipeline.stats.decision_text``): every code path, each budget limit at its boundary, and an import that pulls
in no stage, no LLM engine, no store and no torch.

Budget: 3 rounds, 7000 synthetic rows, $5, patience 2. The facts default to a failing round 1 with 1000 synthetic
rows so far, 2000 for round 2, $1 spent and the next round free: ``continue``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.config_types import BudgetConfig
from pipeline.stats.decision import (
    DECISIONS,
    Condition,
    Facts,
    Gain,
    NextCost,
    RoundGain,
    Synthesis,
    decide,
    plateau_rounds,
)
from pipeline.stats.decision_text import evidence_text, next_step, reason, record, summary

ROOT = Path(__file__).resolve().parents[2]
BUDGET = BudgetConfig(max_rounds=3, max_synthetic_samples=7000, max_spend_usd=5.0, patience=2)
FAILING = Condition("similarity", min=90.0, value=71.2, ok=False)
PASSING = Condition("precision", min=90.0, value=91.0, ok=True)
VS_BASE = Gain("similarity", "baseline", diff=21.2, ci_low=14.1, ci_high=28.3, n=4, sd=7.12, change="better")
VS_PREV = Gain("similarity", "previous", diff=11.2, ci_low=4.08, ci_high=18.3, n=4, sd=7.12, change="better")
FLAT = RoundGain(2, -0.01)


def facts(**changes) -> Facts:
    base = {"round": 1, "verdict": "fail", "budget": BUDGET, "rule_kind": "judge", "rule": (FAILING, PASSING),
            "metric": "similarity", "evidence": (VS_BASE,), "previous_round": 0, "spend_usd": 1.0,
            "synthetic_total": 1000, "next_samples": 2000}
    return Facts(**{**base, **changes})


def limits_of(f: Facts) -> list[tuple]:
    d = decide(f)
    assert d.code == ("stop-budget" if d.limits else "continue")
    return [(lim.name, lim.value, lim.limit) for lim in d.limits]


# --------------------------------------------------------------------------- purity


def test_import_pulls_in_no_stage_engine_store_or_torch():
    code = "import json, sys; import pipeline.stats.decision; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=True)
    loaded = set(json.loads(done.stdout))
    ours = {m for m in loaded if m == "pipeline" or m.startswith("pipeline.")}
    assert ours <= {"pipeline", "pipeline.stats", "pipeline.stats.decision", "pipeline.stats.decision_parts",
                    "pipeline.formatting"}, ours
    assert not loaded & {"torch", "numpy", "yaml", "jsonschema", "transformers"}


# --------------------------------------------------------------------------- the code paths


def test_continue_within_the_budget_names_the_next_round():
    d = decide(facts())
    assert (d.code, d.round, d.next_round, d.next_samples, d.limits) == ("continue", 1, 2, 2000, ())
    assert d.conditions == (FAILING, PASSING) and d.evidence == (VS_BASE,)
    assert (d.spend_usd, d.synthetic_total) == (1.0, 1000) and d.code in DECISIONS


def test_pass_wins_over_everything_and_names_no_next_round():
    spent = facts(verdict="pass", can_synthesize=False, spend_usd=9.0, round=3, history=(FLAT, FLAT))
    d = decide(spent)
    assert (d.code, d.next_round, d.next_samples, d.limits, d.plateau_rounds) == ("pass", None, None, (), ())


def test_no_service_stops_before_the_plateau_and_the_budget():
    d = decide(facts(can_synthesize=False, history=(FLAT, RoundGain(1, -0.5)), spend_usd=9.0))
    assert (d.code, d.next_round, d.limits, d.plateau_rounds) == ("stop-no-service", None, (), ())


def test_plateau_stops_before_the_budget():
    d = decide(facts(round=3, history=(RoundGain(3, -0.02), FLAT), spend_usd=9.0))
    assert (d.code, d.plateau_rounds, d.limits, d.next_round) == ("stop-plateau", (3, 2), (), None)
    assert "rounds 2, 3 each failed to beat the round before on similarity with a 95% CI above 0 " \
           "(budget.patience=2)" in reason(d)


@pytest.mark.parametrize("history,flat", [
    ((RoundGain(3, 0.0), RoundGain(2, 0.0)), (3, 2)),  # a CI reaching 0 is no detectable gain
    ((RoundGain(3, -0.1), RoundGain(2, -0.1), RoundGain(1, 0.5)), (3, 2)),  # only the last ``patience`` count
    ((RoundGain(3, -0.1), RoundGain(2, 0.001)), ()),  # round 2 gained
    ((RoundGain(3, 0.001), RoundGain(2, -0.1)), ()),  # round 3 gained
    ((RoundGain(3, -0.1), RoundGain(2, None)), ()),  # round 2 was not compared
    ((RoundGain(3, -0.1), RoundGain(2, -0.1, passed=True)), ()),  # round 2 passed
    ((RoundGain(3, -0.1),), ()),  # one flat round is not enough
    ((), ()),
])
def test_plateau_needs_patience_flat_rounds_in_a_row(history, flat):
    assert plateau_rounds(history, 2) == flat
    roomy = replace(BUDGET, max_rounds=9)
    assert decide(facts(round=3, history=history, budget=roomy)).code == ("stop-plateau" if flat else "continue")


def test_plateau_with_patience_one():
    assert plateau_rounds((RoundGain(2, -0.1),), 1) == (2,)
    assert decide(facts(round=2, history=(RoundGain(2, -0.1),), budget=replace(BUDGET, patience=1))).code == \
        "stop-plateau"


def test_rounds_limit_is_reached_at_max_rounds():
    assert limits_of(facts(round=2, synthetic_total=0, next_samples=0)) == []
    assert limits_of(facts(round=3, synthetic_total=0, next_samples=0)) == [("max_rounds", 3, 3)]
    d = decide(facts(round=3, synthetic_total=0, next_samples=0))
    assert d.limits[0].text == "3 of budget.max_rounds=3 rounds done"


def test_synthetic_limit_is_inclusive():
    # 3000 so far + 4000 for round 3: exactly 7000 is allowed, one more row is not
    assert limits_of(facts(round=2, synthetic_total=3000, next_samples=4000)) == []
    assert limits_of(facts(round=2, synthetic_total=3001, next_samples=4000)) == [
        ("max_synthetic_samples", 7001, 7000)]
    assert limits_of(facts(round=2, synthetic_total=3000, next_samples=4001)) == [
        ("max_synthetic_samples", 7001, 7000)]
    d = decide(facts(round=2, synthetic_total=3001, next_samples=4000))
    assert d.limits[0].text == ("3001 synthetic rows so far + 4000 for round 3 would pass "
                                "budget.max_synthetic_samples=7000")


def test_spend_limit_is_reached_at_max_spend():
    assert limits_of(facts(spend_usd=4.99)) == []
    cost = NextCost(synth_requests=10, synth_each=1.0, judge_requests=10, judge_each=1.0)
    d = decide(facts(spend_usd=5.0, next_cost=cost))
    assert [(lim.name, lim.value, lim.limit) for lim in d.limits] == [("max_spend_usd", 5.0, 5.0)]  # not twice
    assert d.limits[0].text == "spent $5.00 of budget.max_spend_usd=$5.00"


def test_next_round_cost_must_fit_in_what_is_left():
    # $1 spent + synthesis 4 x $0.50 + judging 8 x $0.25 = exactly $5: allowed; a cent more is not
    fits = NextCost(synth_requests=4, synth_each=0.5, judge_requests=8, judge_each=0.25)
    assert limits_of(facts(next_cost=fits)) == []
    assert limits_of(facts(next_cost=replace(fits, judge_requests=10))) == [("next_round_cost", 5.5, 5.0)]
    assert limits_of(facts(next_cost=replace(fits, synth_requests=5))) == [("next_round_cost", 5.5, 5.0)]
    assert limits_of(facts(spend_usd=1.5, next_cost=fits)) == [("next_round_cost", 5.5, 5.0)]
    d = decide(facts(spend_usd=2.25, next_cost=NextCost(400, 0.01, 12, 0.25 / 12)))
    assert d.limits[0].text == ("the $2.75 left of budget.max_spend_usd=$5.00 cannot pay for round 2: estimated "
                                "synthesis $4.00 (400 requests x $0.0100) + judging $0.25 (12 requests x $0.0208)")


def test_a_round_whose_synthesis_added_no_rows_for_money_stops_on_the_budget():
    spent = Synthesis(asked=2000, requests=3, budget_stopped=True)
    d = decide(facts(round=2, no_new_rows=True, synthesis=spent))
    assert d.code == "stop-budget" and d.next_round is None
    assert [(lim.name, lim.value, lim.limit, lim.text) for lim in d.limits] == [
        ("no_new_rows", 0, None, "synthesis added no rows in round 2")]


def test_every_limit_reached_is_named_in_order():
    cost = NextCost(synth_requests=1, synth_each=1.0)
    assert limits_of(facts(round=3, synthetic_total=6000, spend_usd=5.0, next_cost=cost, no_new_rows=True)) == [
        ("max_rounds", 3, 3), ("max_synthetic_samples", 8000, 7000), ("max_spend_usd", 5.0, 5.0),
        ("no_new_rows", 0, None)]


def test_an_unevaluated_round_whose_replies_were_all_removed_stops_for_want_of_data():
    """Issue 20: round 3 kept 0 of 400 and said stop-budget, though money was not the cause."""
    counts = Synthesis(asked=400, kept=0, received=1680, requests=1680, failures=3,
                       removed=(("length_outlier", 1500), ("near_duplicate", 180)))
    d = decide(facts(round=3, verdict=None, no_new_rows=True, synthesis=counts, rule=(), evidence=()))
    assert (d.code, d.evaluated, d.next_round) == ("stop-no-data", False, None)
    assert (d.conditions, d.limits) == ((), ())
    assert reason(d) == (
        "round 3: synthesis added no rows, so it was not fine-tuned again; synthesis is not delivering "
        "data: kept 0 of 400 asked (0%; synthesize.min_yield=0.5), 1680 pairs received from 1680 "
        "requests: the length band removed the most, 1500; near-duplicates 180; 3 failed replies (not "
        "the reply schema, or an error); another round would ask the same source for more: widen "
        "synthesize.length_filter, or ask the service for answers as long as the seeds', or lower "
        "synthesize.min_yield")
    assert summary(d) == reason(d) and evidence_text(d) == "not evaluated"
    every_failed = decide(facts(round=2, verdict=None, no_new_rows=True, rule=(), evidence=(),
                                synthesis=Synthesis(asked=400, requests=80, failures=80)))
    assert every_failed.code == "stop-no-data"
    assert "0 pairs received from 80 requests: 80 failed replies (not the reply schema, or an error); " \
           "another round would ask the same source for more: check failures.jsonl" in reason(every_failed)


def test_an_unevaluated_round_stops_on_the_budget_when_money_is_why():
    stopped = decide(facts(round=2, verdict=None, no_new_rows=True,
                           synthesis=Synthesis(asked=400, requests=5, budget_stopped=True)))
    assert (stopped.code, stopped.evaluated) == ("stop-budget", False)
    assert reason(stopped).endswith("not fine-tuned again: the spend budget (budget.max_spend_usd) ran out")
    capped = decide(facts(round=2, verdict=None, no_new_rows=True, synthesis=Synthesis(asked=0, capped=True)))
    assert capped.code == "stop-budget"
    assert reason(capped).endswith("not fine-tuned again: budget.max_synthetic_samples=7000 left nothing "
                                   "to ask for")


def test_a_round_whose_every_request_the_cap_refused_stops_before_training():
    """Issue 19: a budget smaller than one request sent nothing, yet round 1 said ``continue``."""
    refused = Synthesis(asked=1000, budget_stopped=True, requests=0, refused_all=True)
    d = decide(facts(verdict=None, no_new_rows=True, synthesis=refused, spend_usd=0.0, rule=(),
                     evidence=(), budget=replace(BUDGET, max_spend_usd=0.001)))
    assert (d.code, d.evaluated, d.next_round, d.next_samples) == ("stop-budget", False, None, None)
    assert [(lim.name, lim.value, lim.limit) for lim in d.limits] == [("no_new_rows", 0, None)]
    assert reason(d) == ("round 1: synthesis added no rows (kept 0), so it was not fine-tuned: the spend cap "
                         "refused every request (none was sent): the $0.0010 left of budget.max_spend_usd=$0.0010 "
                         "cannot pay for one; raise the budget to go on")
    some_spent = decide(facts(round=2, verdict=None, no_new_rows=True, spend_usd=4.5,
                              synthesis=Synthesis(asked=10, budget_stopped=True, refused_all=True)))
    assert reason(some_spent).endswith("not fine-tuned again: the spend cap refused every request (none was sent): "
                                       "the $0.5000 left of budget.max_spend_usd=$5.0000 cannot pay for one; "
                                       "raise the budget to go on")
    one_sent = decide(facts(verdict=None, no_new_rows=True,
                            synthesis=Synthesis(10, budget_stopped=True, requests=1)))
    assert reason(one_sent).endswith("not fine-tuned: the spend budget (budget.max_spend_usd) ran out")


# --------------------------------------------------------------------------- the words


def test_reason_and_summary_of_a_failing_round():
    d = decide(facts(round=2, previous_round=1, evidence=(VS_BASE, VS_PREV)))
    ev = ("similarity vs the untuned baseline: +21.2 (95% CI +14.1 to +28.3, n=4), better; similarity vs round 1: "
          "+11.2 (95% CI +4.08 to +18.3, n=4), better")
    assert evidence_text(d) == ev
    assert reason(d) == (f"round 2 fails (FAIL: similarity mean = 71.2 (needs >= 90)); {ev}; the budget allows "
                         "round 3 with 2000 more synthetic samples")
    assert summary(d) == "round 2 fails; the budget allows round 3 with 2000 more synthetic samples"


def test_reason_of_a_pass_lists_every_row():
    d = decide(facts(verdict="pass", rule=(PASSING,), evidence=()))
    assert reason(d) == ("round 1 passes the judge rule (ok: precision mean = 91 (needs >= 90)); similarity vs the "
                         "untuned baseline: not compared")
    assert summary(d) == "round 1 passes the judge rule"


def test_judge_cut_short_is_a_note_beside_the_rows():
    d = decide(facts(judge_stopped=True, no_new_rows=True))
    assert reason(d).startswith("round 1 fails (FAIL: similarity mean = 71.2 (needs >= 90); the judge was cut short "
                                "by the spend budget); ")
    assert reason(d).endswith("; the budget is spent: synthesis added no rows in round 1")
    assert summary(d) == "round 1 fails; the budget is spent: synthesis added no rows in round 1"
    alone = decide(facts(judge_stopped=True, rule=(PASSING,)))
    assert summary(alone).startswith("round 1 fails (the judge was cut short by the spend budget); ")
    assert summary(decide(facts(rule=(PASSING,)))).startswith("round 1 fails (the pass rule does not hold); ")


def test_round_zero_under_a_relative_rule_is_the_baseline():
    relative = Condition("embedding", stat="ci_low", vs="baseline", above=0.0, why="no untuned baseline")
    d = decide(facts(round=0, rule=(relative, PASSING), can_synthesize=False, previous_round=None, evidence=()))
    assert reason(d).startswith("round 0 fails (FAIL: embedding ci_low vs baseline > 0: no untuned baseline); ")
    assert summary(d).startswith("round 0 is the baseline; no service LLM is configured for synthesis")
    assert summary(decide(facts(round=0, can_synthesize=False))).startswith("round 0 fails; ")


def test_record_is_decision_json():
    d = decide(facts(spend_usd=5.0))
    doc = record(d)
    assert list(doc) == ["decision", "reason", "round", "next_round", "next_samples", "spend_usd", "synthetic_total",
                         "evidence", "conditions", "limits", "best", "synthesis"]
    assert (doc["best"], doc["synthesis"]) == (None, None)
    assert doc["evidence"] == {"metric": "similarity", "vs_baseline": {"diff": 21.2, "ci_low": 14.1, "ci_high": 28.3,
                                                                       "n": 4, "sd": 7.12, "change": "better"},
                               "vs_previous": None, "text": evidence_text(d)}
    assert doc["limits"] == [{"name": "max_spend_usd", "value": 5.0, "limit": 5.0,
                              "text": "spent $5.00 of budget.max_spend_usd=$5.00"}]
    assert doc["conditions"][0] == {"metric": "similarity", "stat": "mean", "vs": None, "min": 90.0, "above": None,
                                    "value": 71.2, "ok": False, "why": None}
    assert json.loads(json.dumps(doc)) == doc


def test_next_step_for_the_pr_title():
    assert [next_step(code, 2) for code in DECISIONS] == [
        "", "next: round 2", "stop: plateau", "stop: budget", "stop: no service", "stop: regressed",
        "stop: no data"]
