"""``evidence``: what a round's scores prove, on hand-computed cases (issue 18, item 5: before these, no unit test
ran ``pipeline/stats/evidence.py`` and every change ``bench/mutants.py`` made to it went unnoticed)."""

from __future__ import annotations

from statistics import NormalDist
from types import SimpleNamespace

import pytest

from pipeline.config import RuleCondition
from pipeline.stats.aggregate import summarize
from pipeline.stats.evidence import baseline_summary, build, compare, decision_metric, per_prompt, power
from pipeline.stats.paired import clustered_ci, paired_diff

SIM = [0.5, 0.8, 0.6, 0.7, 0.55, 0.75, 0.65, 0.6, 0.7, 0.8, 0.5, 0.65]


def score_rows(sims, shift=0.0, bleu=None):
    return [{"id": f"p{i:02d}", "category": "ab"[i % 2],
             "scores": {"sim": round(s + shift, 6), "bleu": None if bleu is None else bleu[i]}}
            for i, s in enumerate(sims)]


def test_per_prompt_averages_a_prompts_rows_and_skips_rows_without_scores():
    rows = [{"id": "a", "scores": {"sim": 0.5}}, {"id": "a", "scores": {"sim": 0.75}}, {"id": "b", "scores": None},
            {"id": "c"}, {"id": 1, "scores": {"sim": 0.25, "bleu": 9}}, {"id": "d", "scores": {"sim": None}}]
    assert per_prompt(rows, "sim") == {"a": 0.625, "1": 0.25}


def test_compare_is_the_paired_diff_with_the_confidence_asked_and_a_word():
    current, other = score_rows(SIM), score_rows(SIM[::-1])
    got = compare(current, other, ["sim", "bleu"], samples=401, confidence=0.9)
    expected = paired_diff(per_prompt(current, "sim"), per_prompt(other, "sim"), samples=401, confidence=0.9)
    assert got == {"sim": {**expected, "change": "no detectable change"}}  # bleu: never scored on the other side
    assert paired_diff(per_prompt(current, "sim"), per_prompt(other, "sim"), samples=401) != expected  # 95% differs
    better = compare(score_rows(SIM, shift=0.1), current, ["sim"], samples=401, confidence=0.9)["sim"]
    assert better["diff"] == pytest.approx(0.1) and better["change"] == "better"
    assert compare(current, None, ["sim"], samples=401, confidence=0.9) == {}


def test_baseline_summary_keeps_scored_metrics_and_their_ci():
    rows = score_rows(SIM) + [{"id": "p99"}]
    got = baseline_summary(rows, ["sim", "bleu"], samples=401, confidence=0.9)
    ci = clustered_ci(SIM + [None], [f"p{i:02d}" for i in range(13)], samples=401, confidence=0.9)
    assert got == {"sim": ci}  # bleu was never scored; n counts prompts with a score
    assert baseline_summary(None, ["sim"], samples=401, confidence=0.9) == {}
    assert baseline_summary([], ["sim"], samples=401, confidence=0.9) == {}


def test_power_figures_by_hand():
    z90, z80 = NormalDist().inv_cdf(0.95), NormalDist().inv_cdf(0.8)
    summary = {"n": 16, "ci_low": 0.61, "ci_high": 0.74}
    got = power(summary, {"sd": 0.2}, threshold=0.7, confidence=0.9, delta=0.1)
    assert got == {"n": 16, "ci_half_width": 0.065, "prompts_to_halve": 64, "paired_sd": 0.2,
                   "diff_half_width": round(z90 * 0.2 / 4, 6),  # 0.082243: rounded to 6 places
                   "detectable_difference": round((z90 + z80) * 0.2 / 4, 6), "can_decide": False,
                   "detect_difference": 0.1, "prompts_for_difference": 25}  # (2.486475 * 2) ** 2 = 24.73
    assert power(summary, {"sd": 0.2}, threshold=0.6, confidence=0.9, delta=None)["can_decide"] is True
    no_diff = power({"n": 1, "ci_low": None, "ci_high": None}, None, threshold=None, confidence=0.9, delta=0.1)
    assert no_diff == {"n": 1, "ci_half_width": None, "prompts_to_halve": 4, "paired_sd": None,
                       "diff_half_width": None, "detectable_difference": None, "can_decide": None}
    assert power(None, None, threshold=0.5, confidence=0.9, delta=None) == {}
    assert power({"n": 0, "ci_low": None}, None, threshold=0.5, confidence=0.9, delta=None) == {}


def test_decision_metric_is_the_configured_one_else_the_rules_first_computed_else_the_first():
    metrics = {"rougeL": {}, "sim": {}}
    rule = [RuleCondition("judge", "mean", 50), RuleCondition("sim", "mean", 0.5)]
    assert decision_metric(rule, "bleu", metrics) == "bleu"
    assert decision_metric(rule, None, metrics) == "sim"  # "judge" was not computed
    assert decision_metric([], None, metrics) == "rougeL"
    assert decision_metric([], None, {}) is None


def evaluate_section(**kw):
    return SimpleNamespace(**{"thresholds": {"sim": 0.6}, "bootstrap_samples": 401, "confidence": 0.9,
                              "decision_metric": None, "detect_difference": None, **kw})


def test_build_checks_power_against_the_decision_metrics_own_bound():
    rows = score_rows(SIM, bleu=[0.3] * 12)
    s = summarize(SIM, 0.6, clusters=[r["id"] for r in rows], samples=401, confidence=0.9)
    inside = round((s["ci_low"] + s["ci_high"]) / 2, 3)  # a bound inside sim's CI: the test set cannot decide
    assert s["ci_low"] < inside < s["ci_high"]
    rule = [RuleCondition("bleu", "mean", 0.0),  # another metric's bound: not sim's
            RuleCondition("sim", "diff", None, vs="baseline", above=0.0),  # a bound on the difference
            RuleCondition("sim", "pass_rate", 0.0),  # a bound on another stat
            RuleCondition("sim", "ci_low", inside)]
    out = build(rows, {"sim": SIM, "bleu": [0.3] * 12}, ev=evaluate_section(decision_metric="sim"),
                conditions=rule, baseline=score_rows(SIM, shift=-0.1), previous=None)
    assert out["decision_metric"] == "sim" and out["metrics"]["sim"] == s
    assert out["power"]["can_decide"] is False  # every other bound (0.0) lies below the whole CI
    assert out["verdict"] == "fail" and [r["ok"] for r in out["rule"]] == [True, True, True, False]
    assert out["by_category"]["a"]["sim"]["n"] == 6


def test_build_takes_the_paired_sd_from_the_baseline_else_the_previous_round():
    rows, scores = score_rows(SIM), {"sim": SIM}
    base = score_rows([0.5] * 12)
    prev = score_rows(SIM[::-1])
    both = build(rows, scores, ev=evaluate_section(), conditions=[], baseline=base, previous=prev)
    assert both["power"]["paired_sd"] == both["vs_baseline"]["sim"]["sd"] != both["vs_previous"]["sim"]["sd"]
    only_prev = build(rows, scores, ev=evaluate_section(), conditions=[], baseline=None, previous=prev)
    assert only_prev["power"]["paired_sd"] == only_prev["vs_previous"]["sim"]["sd"] is not None
