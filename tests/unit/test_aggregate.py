"""Aggregates and the pass rule, on hand-computed cases."""

from __future__ import annotations

import pytest

from pipeline.config import RuleCondition
from pipeline.stats.aggregate import apply_rule, bootstrap_ci, by_category, mean, pass_rate, summarize, summarize_all
from pipeline.stats.paired import (
    can_decide,
    change_word,
    cluster_means,
    clustered_ci,
    detectable_difference,
    half_width,
    paired_diff,
    prompts_needed,
    prompts_to_halve,
    win_rate,
)


def test_mean_and_pass_rate_skip_unscored_samples():
    values = [80, 90, None, 100]
    assert mean(values) == pytest.approx(90.0)
    assert pass_rate(values, 90) == pytest.approx(2 / 3)  # >= threshold counts as passing
    assert mean([None, None]) is None
    assert pass_rate([1.0], None) is None


def test_summary_shape_and_values():
    s = summarize([0.2, 0.4, 0.6, 0.8], 0.5, samples=200, seed=1)
    assert set(s) == {"mean", "pass_rate", "threshold", "ci_low", "ci_high", "n", "samples", "mc_error"}
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
    cond = [RuleCondition("rougeL", "pass_rate", 0.75), RuleCondition("similarity", "pass_rate", 0.5)]
    rows, verdict = apply_rule(cond, METRICS)
    assert verdict == "pass" and [r["value"] for r in rows] == [0.75, 0.5]
    cond[1] = RuleCondition("similarity", "pass_rate", 0.51)
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


# --- evidence statistics: prompt-clustered CIs, paired differences, test-set size (pipeline/stats/paired.py) ---


def _prompt_scores(n=20, seed=3):
    import numpy as np

    return [float(x) for x in np.random.default_rng(seed).normal(0.6, 0.15, size=n)]


def test_cluster_means_skip_unscored_and_drop_all_none_prompts():
    out = cluster_means([1.0, None, 3.0, None, None, 5.0], ["a", "a", "a", "b", "b", "c"])
    assert out == {"a": 2.0, "c": 5.0}
    with pytest.raises(ValueError):
        cluster_means([1.0], ["a", "b"])


def test_clustered_ci_repeats_of_a_prompt_do_not_shrink_the_ci():
    per_prompt = _prompt_scores()
    once = clustered_ci(per_prompt, list(range(20)), samples=2000, seed=0)
    values = [v for v in per_prompt for _ in range(10)]
    clusters = [p for p in range(20) for _ in range(10)]
    tenfold = clustered_ci(values, clusters, samples=2000, seed=0)
    assert once["n"] == tenfold["n"] == 20
    assert tenfold == once  # same prompts, same per-prompt means: the very same interval
    assert once["ci_low"] < once["mean"] < once["ci_high"]
    # the naive per-sample bootstrap believes it has 200 independent samples: ~sqrt(10) narrower
    lo, hi = bootstrap_ci(values, samples=2000, seed=0)
    ratio = (once["ci_high"] - once["ci_low"]) / (hi - lo)
    assert 2.5 < ratio < 4.0


def test_clustered_ci_mean_is_the_mean_of_prompt_means_and_edge_cases():
    s = clustered_ci([1.0, 1.0, 1.0, 0.0, None], ["a", "a", "a", "b", "b"], samples=200)
    assert s["mean"] == pytest.approx(0.5) and s["n"] == 2  # not 0.75: prompt "a" does not weigh 3x
    assert clustered_ci([0.7, None], ["a", "b"]) == {"mean": 0.7, "ci_low": None, "ci_high": None, "n": 1,
                                                     "mc_error": None}
    assert clustered_ci([None], ["a"]) == {"mean": None, "ci_low": None, "ci_high": None, "n": 0,
                                           "mc_error": None}


def test_paired_diff_constant_shift_is_detected_with_a_zero_width_ci():
    a = {f"p{i}": v for i, v in enumerate(_prompt_scores())}
    b = {k: v + 0.1 for k, v in a.items()}
    d = paired_diff(a, b, samples=500)
    assert set(d) == {"diff", "ci_low", "ci_high", "n", "sd", "mc_error", "p_value", "p_wilcoxon"}
    assert d["n"] == 20
    assert d["diff"] == pytest.approx(-0.1) and d["ci_low"] == pytest.approx(-0.1) == d["ci_high"]
    assert d["sd"] == pytest.approx(0.0)
    assert change_word(d) == "worse"
    assert change_word(paired_diff(b, a, samples=500)) == "better"


def test_paired_diff_pure_noise_includes_zero():
    import numpy as np

    rng = np.random.default_rng(11)
    a = {i: float(v) for i, v in enumerate(rng.normal(0.6, 0.1, size=30))}
    b = {i: float(v) for i, v in enumerate(rng.normal(0.6, 0.1, size=30))}
    d = paired_diff(a, b, samples=1000)
    assert d["ci_low"] < 0 < d["ci_high"]
    assert d["ci_low"] < d["diff"] < d["ci_high"]
    assert change_word(d) == "no detectable change"
    diffs = [a[i] - b[i] for i in range(30)]
    assert d["sd"] == pytest.approx(float(np.std(diffs, ddof=1)), abs=1e-6)


def test_paired_diff_counts_only_prompts_scored_on_both_sides():
    a = {"x": 0.9, "y": 0.5, "z": None, "only_a": 0.0}
    b = {"x": 0.4, "y": 0.5, "z": 0.1, "only_b": 1.0}
    d = paired_diff(a, b, samples=200)
    assert d["n"] == 2 and d["diff"] == pytest.approx(0.25)
    none = {"mc_error": None, "p_value": None, "p_wilcoxon": None}
    assert paired_diff({"x": 0.9}, {"x": 0.4}) == {"diff": 0.5, "ci_low": None, "ci_high": None, "n": 1,
                                                   "sd": None, **none}
    assert paired_diff({"x": 0.9}, {"y": 0.4}) == {"diff": None, "ci_low": None, "ci_high": None, "n": 0,
                                                   "sd": None, **none}
    assert change_word(paired_diff({"x": 0.9}, {"x": 0.4})) == "no detectable change"  # no CI, no claim


def test_seeds_make_the_intervals_reproducible_and_order_independent():
    import numpy as np

    rng = np.random.default_rng(5)
    a = {f"p{i}": float(v) for i, v in enumerate(rng.normal(0.6, 0.1, size=25))}
    b = {f"p{i}": float(v) for i, v in enumerate(rng.normal(0.55, 0.1, size=25))}
    assert paired_diff(a, b, seed=4) == paired_diff(a, b, seed=4)
    assert paired_diff(a, b, seed=4) == paired_diff(dict(reversed(a.items())), b, seed=4)
    assert paired_diff(a, b, seed=4)["ci_low"] != paired_diff(a, b, seed=5)["ci_low"]
    values, clusters = list(a.values()) * 2, list(a) * 2
    assert clustered_ci(values, clusters, seed=2) == clustered_ci(values[::-1], clusters[::-1], seed=2)


def test_power_and_test_size():
    # sd 10, delta 5, 95% two-sided, 80% power: ((1.959964 + 0.841621) * 10 / 5) ** 2 = 31.39 -> 32 prompts
    assert prompts_needed(10, 5) == 32
    assert prompts_needed(0.1, 0.05, confidence=0.95, power=0.8) == 32  # scale-free
    # sd 1, delta 1, 90% two-sided (z 1.644854), 50% power (z 0): 2.7055 -> 3
    assert prompts_needed(1, 1, confidence=0.90, power=0.5) == 3
    assert prompts_needed(0.01, 1) == 2  # never fewer than two prompts
    with pytest.raises(ValueError):
        prompts_needed(1, 0)
    assert half_width(10, 25) == pytest.approx(1.959964 * 10 / 5, abs=1e-5)
    assert half_width(None, 25) is None and half_width(1.0, 0) is None
    assert prompts_to_halve(15) == 60
    assert half_width(10, prompts_to_halve(25)) == pytest.approx(half_width(10, 25) / 2)
    dd = detectable_difference(10, 32)
    assert dd == pytest.approx(2.801585 * 10 / 32 ** 0.5, abs=1e-5) and dd <= 5  # 32 prompts suffice for 5
    assert detectable_difference(10, 31) > 5
    assert detectable_difference(None, 10) is None


def test_can_decide():
    assert can_decide(0.82, 0.9, 0.8)  # whole CI above: pass is settled
    assert can_decide(0.8, 0.9, 0.8)  # at the threshold counts as passing, like apply_rule
    assert can_decide(0.6, 0.79, 0.8)  # whole CI below: fail is settled
    assert not can_decide(0.75, 0.85, 0.8)  # straddles: the test set cannot decide
    assert not can_decide(None, None, 0.8) and not can_decide(0.1, 0.2, None)


def test_win_rate_with_ties_and_several_outcomes_per_prompt():
    outcomes = {"a": [1, 1], "b": 0.5, "c": [0, 0.5, None], "d": 1.0, "e": None}
    w = win_rate(outcomes, samples=500)
    assert {k: w[k] for k in ("wins", "ties", "losses")} == {"wins": 3, "ties": 2, "losses": 1}
    assert w["n"] == 4  # "e" was never judged
    assert w["mean"] == pytest.approx((1 + 0.5 + 0.25 + 1) / 4)  # per-prompt means, then their mean
    assert set(w) == {"mean", "ci_low", "ci_high", "n", "mc_error", "wins", "ties", "losses"}
    assert 0.25 <= w["ci_low"] <= w["mean"] <= w["ci_high"] <= 1.0
    with pytest.raises(ValueError):
        win_rate({"a": [0.7]})
