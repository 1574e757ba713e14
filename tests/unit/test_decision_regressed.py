"""Issue 20: the pure decision reacts to what it measured. ``stop-regressed``: significantly worse than
the best round so far, unless ``budget.on_regression: continue``; ``stop-no-data``: the synthesis kept
less than ``synthesize.min_yield`` of what it asked for, money not being why; each in its place in the
order of the checks.

The facts (``tests/unit/test_decision_pure.py``) default to a failing round 1 with the budget left
(``continue``). Here round 2 fails; round 1, the best so far, scored 0.265 on rougeL and round 2 0.239,
-0.026 [-0.056, -0.001]: the measured example of the issue.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.stats.decision import Best, Gain, RoundGain, Synthesis, decide
from pipeline.stats.decision_text import best_text, reason, record, summary
from tests.unit.test_decision_pure import BUDGET, facts

WORSE = Gain("rougeL", "best", diff=-0.026, ci_low=-0.056, ci_high=-0.001, n=50, sd=0.07, change="worse")
REGRESSED = Best(1, 0.265, "rougeL", this_mean=0.239, before=1, before_mean=0.265, vs_before=WORSE)
LOW_YIELD = Synthesis(asked=200, kept=51, received=625, requests=130, failures=2,
                      removed=(("length_outlier", 572), ("near_duplicate", 31)))
FULL_YIELD = Synthesis(asked=200, kept=200, received=260, requests=52)


def round2(**changes):
    return facts(round=2, previous_round=1, metric="rougeL", evidence=(), **changes)


def test_a_round_significantly_worse_than_the_best_stops_and_names_it():
    d = decide(round2(best=REGRESSED, synthesis=FULL_YIELD))
    assert (d.code, d.next_round, d.next_samples, d.limits) == ("stop-regressed", None, None, ())
    assert reason(d).endswith(
        "rougeL is significantly worse than round 1, the best round so far (0.265): rougeL vs round 1: "
        "-0.026 (95% CI -0.056 to -0.001, n=50), worse; round 1's adapter stays the one to use "
        "(budget.on_regression=stop)")
    assert summary(d).startswith("round 2 fails; rougeL is significantly worse than round 1")
    assert best_text(d) == ("best so far: round 1 (rougeL 0.265); this round 0.239, "
                            "-0.026 [-0.056, -0.001] vs round 1, worse")
    doc = record(d)
    assert doc["best"]["round"] == 1 and doc["best"]["vs_before"]["ci_high"] == -0.001
    assert doc["best"]["text"] == best_text(d)


def test_on_regression_continue_goes_on_and_says_so():
    lenient = replace(BUDGET, on_regression="continue")
    d = decide(round2(best=REGRESSED, synthesis=FULL_YIELD, budget=lenient))
    assert (d.code, d.next_round, d.next_samples) == ("continue", 3, 2000)
    assert "rougeL is significantly worse than round 1, the best round so far (0.265)" in reason(d)
    assert reason(d).endswith(", but budget.on_regression=continue: the budget allows round 3 with 2000 "
                              "more synthetic samples")


@pytest.mark.parametrize("change", ["no detectable change", "better"])
def test_a_round_not_significantly_worse_is_no_regression(change):
    best = replace(REGRESSED, vs_before=replace(WORSE, change=change))
    assert decide(round2(best=best, synthesis=FULL_YIELD)).code == "continue"


def test_a_borderline_loss_is_a_regression_and_a_borderline_gain_is_not():
    best = replace(REGRESSED, vs_before=replace(WORSE, change="borderline"))
    d = decide(round2(best=best, synthesis=FULL_YIELD))
    assert d.code == "stop-regressed"
    assert "worse (borderline: a CI bound within Monte-Carlo error of 0) than round 1" in reason(d)
    gain = replace(REGRESSED, vs_before=replace(WORSE, change="borderline", diff=0.026, ci_low=0.001,
                                                ci_high=0.056))
    assert decide(round2(best=gain, synthesis=FULL_YIELD)).code == "continue"


def test_a_low_yield_stops_for_want_of_data_and_names_the_filter():
    d = decide(round2(synthesis=LOW_YIELD))
    assert (d.code, d.next_round, d.evaluated) == ("stop-no-data", None, True)
    assert reason(d).endswith(
        "synthesis is not delivering data: kept 51 of 200 asked (26%; synthesize.min_yield=0.5), 625 pairs "
        "received from 130 requests: the length band removed the most, 572; near-duplicates 31; 2 failed "
        "replies (not the reply schema, or an error); another round would ask the same source for more: "
        "widen synthesize.length_filter, or ask the service for answers as long as the seeds', or lower "
        "synthesize.min_yield")
    assert record(d)["synthesis"]["removed"] == {"length_outlier": 572, "near_duplicate": 31}
    # the bound is min_yield of what was asked: 100 of 200 is enough at 0.5, 99 is not
    assert decide(round2(synthesis=replace(LOW_YIELD, kept=100))).code == "continue"
    assert decide(round2(synthesis=replace(LOW_YIELD, kept=99))).code == "stop-no-data"
    assert decide(round2(synthesis=LOW_YIELD, min_yield=0.25)).code == "continue"


def test_a_low_yield_for_money_is_the_budget():
    # the spend budget stopped the synthesis: money, not the data, is why it kept too little
    d = decide(round2(synthesis=replace(LOW_YIELD, budget_stopped=True), spend_usd=5.0))
    assert d.code == "stop-budget" and [lim.name for lim in d.limits] == ["max_spend_usd"]


def test_a_first_round_without_a_service_is_not_no_data():
    assert decide(facts(can_synthesize=False, synthesis=None)).code == "stop-no-service"


def test_the_order_of_the_checks():
    flat = (RoundGain(2, -0.01), RoundGain(1, -0.01))
    spent = {"spend_usd": 9.0}
    everything = {"best": REGRESSED, "synthesis": LOW_YIELD, "history": flat, **spent}
    assert decide(round2(verdict="pass", **everything)).code == "pass"
    assert decide(round2(can_synthesize=False, **everything)).code == "stop-no-service"
    assert decide(round2(**everything)).code == "stop-regressed"
    assert decide(round2(**{**everything, "best": None})).code == "stop-no-data"
    assert decide(round2(**{**everything, "best": None, "synthesis": FULL_YIELD})).code == "stop-plateau"
    assert decide(round2(**spent, synthesis=FULL_YIELD)).code == "stop-budget"
    assert decide(round2(synthesis=FULL_YIELD)).code == "continue"
    # a regression let through by on_regression: continue falls to the next checks
    lenient = replace(BUDGET, on_regression="continue")
    assert decide(round2(**{**everything, "budget": lenient})).code == "stop-no-data"


def test_a_round_that_is_the_new_best_says_so():
    better = replace(WORSE, diff=0.01, ci_low=0.002, ci_high=0.02, change="better")
    best = Best(2, 0.275, "rougeL", this_mean=0.275, before=1, before_mean=0.265, vs_before=better)
    d = decide(round2(best=best, synthesis=FULL_YIELD))
    assert d.code == "continue"
    assert best_text(d) == ("best so far: round 2 (rougeL 0.275), this round; +0.01 [+0.002, +0.02] vs "
                            "round 1, better (the best before it, 0.265)")
    first = decide(facts(best=Best(1, 0.265, "rougeL", this_mean=0.265)))
    assert best_text(first) == "best so far: round 1 (rougeL 0.265), the first evaluated round"
