"""Aggregates and the pass rule, on hand-computed cases."""

from __future__ import annotations

import pytest

from pipeline.aggregate import apply_rule, bootstrap_ci, by_category, mean, pass_rate, summarize, summarize_all
from pipeline.config import RuleCondition


def test_mean_and_pass_rate_skip_unscored_samples():
    values = [80, 90, None, 100]
    assert mean(values) == pytest.approx(90.0)
    assert pass_rate(values, 90) == pytest.approx(2 / 3)  # >= threshold counts as passing
    assert mean([None, None]) is None
    assert pass_rate([1.0], None) is None


def test_summary_shape_and_values():
    s = summarize([0.2, 0.4, 0.6, 0.8], 0.5, samples=200, seed=1)
    assert set(s) == {"mean", "pass_rate", "threshold", "ci_low", "ci_high", "n"}
    assert s["mean"] == pytest.approx(0.5)
    assert s["pass_rate"] == pytest.approx(0.5)
    assert s["threshold"] == 0.5 and s["n"] == 4
    assert 0.2 <= s["ci_low"] <= 0.5 <= s["ci_high"] <= 0.8


def test_bootstrap_ci_contains_the_mean_and_narrows_with_n():
    import numpy as np

    rng = np.random.default_rng(7)
    small = list(rng.normal(70, 10, size=10))
    large = list(rng.normal(70, 10, size=400))
    lo_s, hi_s = bootstrap_ci(small, samples=1000, seed=0)
    lo_l, hi_l = bootstrap_ci(large, samples=1000, seed=0)
    assert lo_s < mean(small) < hi_s
    assert lo_l < mean(large) < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 3  # width ~ 1/sqrt(n): 40x the samples, ~6x narrower
    assert bootstrap_ci(small, samples=1000, seed=0) == (lo_s, hi_s)  # seeded: reproducible
    # higher confidence, wider interval
    lo99, hi99 = bootstrap_ci(small, samples=1000, confidence=0.99, seed=0)
    assert lo99 <= lo_s and hi99 >= hi_s


def test_bootstrap_edge_cases():
    assert bootstrap_ci([], samples=100) == (None, None)
    assert bootstrap_ci([None, 5.0], samples=100) == (5.0, 5.0)
    assert bootstrap_ci([3.0, 3.0, 3.0], samples=100) == (3.0, 3.0)


def test_by_category():
    cats = ["a", "a", "b", None]
    out = by_category(cats, {"bleu": [10, 30, 50, None]}, {"bleu": 20})
    assert out["a"]["bleu"] == {"mean": 20.0, "pass_rate": 0.5, "n": 2}
    assert out["b"]["bleu"] == {"mean": 50.0, "pass_rate": 1.0, "n": 1}
    assert out["none"]["bleu"] == {"mean": None, "pass_rate": None, "n": 0}


METRICS = summarize_all(
    {"similarity": [95, 85, 92, 88], "rougeL": [0.5, 0.1, 0.4, 0.35]},
    {"similarity": 90, "rougeL": 0.3}, samples=500,
)  # similarity: mean 90, pass rate 0.5; rougeL: mean 0.3375, pass rate 0.75


def test_rule_on_mean():
    rows, verdict = apply_rule([RuleCondition("similarity", "mean", 90)], METRICS)
    assert verdict == "pass" and rows[0]["value"] == pytest.approx(90.0) and rows[0]["ok"]
    rows, verdict = apply_rule([RuleCondition("similarity", "mean", 90.5)], METRICS)
    assert verdict == "fail" and not rows[0]["ok"]


def test_rule_on_pass_rate_and_every_condition_must_hold():
    cond = [{"metric": "rougeL", "stat": "pass_rate", "min": 0.75}, {"metric": "similarity", "stat": "pass_rate",
                                                                      "min": 0.5}]
    rows, verdict = apply_rule(cond, METRICS)
    assert verdict == "pass" and [r["value"] for r in rows] == [0.75, 0.5]
    cond[1]["min"] = 0.51
    rows, verdict = apply_rule(cond, METRICS)
    assert verdict == "fail" and [r["ok"] for r in rows] == [True, False]


def test_rule_on_ci_low_is_stricter_than_mean():
    ci_low = METRICS["similarity"]["ci_low"]
    assert ci_low < 90
    assert apply_rule([RuleCondition("similarity", "mean", 90)], METRICS)[1] == "pass"
    rows, verdict = apply_rule([RuleCondition("similarity", "ci_low", 90)], METRICS)
    assert verdict == "fail" and rows[0]["value"] == ci_low
    rows, verdict = apply_rule([RuleCondition("similarity", "ci_low", ci_low)], METRICS)
    assert verdict == "pass"


def test_rule_on_a_metric_not_computed_fails_and_says_so():
    rows, verdict = apply_rule([RuleCondition("similarity", "mean", 0), RuleCondition("embedding", "mean", 0)],
                               METRICS)
    assert verdict == "fail"
    assert rows[0]["ok"] and not rows[1]["ok"]
    assert rows[1]["value"] is None and "not computed" in rows[1]["why"]


def test_rule_on_a_metric_with_no_scored_samples_fails():
    metrics = summarize_all({"precision": [None, None]}, {"precision": 90})
    rows, verdict = apply_rule([RuleCondition("precision", "mean", 0)], metrics)
    assert verdict == "fail" and "no scored samples" in rows[0]["why"]


def test_empty_rule_fails():
    assert apply_rule([], METRICS) == ([], "fail")
