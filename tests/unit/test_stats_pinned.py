"""The statistics' arithmetic pinned to hand-computed and independently computed values (issue 18, item 5).

Before these, computing a 90% interval where 95% was asked (alpha ``1 - confidence`` instead of half of it) failed
no test: ``bench/mutants.py`` lists the changes the tests now catch. Bootstrap references are drawn here with numpy
from the same seed, in one draw: the same resamples as ``percentile_ci``'s, whatever its chunking.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from pipeline.config import RuleCondition
from pipeline.stats.aggregate import apply_rule, bootstrap_ci, summarize
from pipeline.stats.paired import (
    can_decide,
    change_word,
    clustered_ci,
    detectable_difference,
    half_width,
    paired_diff,
    percentile_ci,
    prompts_needed,
    win_rate,
)

VALUES = [0.1, 0.4, 0.35, 0.8, 0.55, 0.9, 0.2, 0.65, 0.5, 0.3]


def resample_means(values, samples: int, seed: int = 0) -> np.ndarray:
    """The sorted means of ``samples`` resamples of ``values``, from the seed ``percentile_ci`` uses."""
    vals = np.asarray(values, dtype=float)
    idx = np.random.default_rng(seed).integers(0, vals.size, size=(samples, vals.size))
    return np.sort(vals[idx].mean(axis=1))


def test_95_percent_ci_is_the_2_5th_and_97_5th_percentile_of_the_resample_means_issue18():
    # 401 resamples: numpy's quantile at 0.025 sits exactly on the 11th smallest mean (400 * 0.025 = 10) and at
    # 0.975 on the 11th largest; a 90% interval would be the 21st smallest and largest instead.
    means = resample_means(VALUES, 401)
    assert list(means[[10, 20, 40, 360, 380, 390]]) == pytest.approx([0.31, 0.34, 0.375, 0.565, 0.59, 0.61])

    def ci(values, **kw):  # the quantile's interpolation weight is 1 up to float noise
        return pytest.approx(percentile_ci(values, samples=401, **kw), abs=1e-12)

    assert ci(VALUES, confidence=0.95) == (means[10], means[390])
    assert ci(VALUES, confidence=0.90) == (means[20], means[380])
    assert ci(VALUES, confidence=0.80) == (means[40], means[360])
    assert percentile_ci(VALUES) == percentile_ci(VALUES, confidence=0.95)  # 95% unless told otherwise
    assert pytest.approx(bootstrap_ci([None, *VALUES], samples=401, confidence=0.9), abs=1e-12) == (
        means[20], means[380])


def test_two_values_get_a_bootstrap_ci_and_one_value_a_point():
    means = resample_means([0.0, 1.0], 401)  # each resample mean is 0, 0.5 or 1
    assert percentile_ci([0.0, 1.0], samples=401) == (0.0, 1.0) == (means[10], means[390])
    assert percentile_ci([0.25], samples=401) == (0.25, 0.25)


def test_chunked_resampling_draws_the_same_resamples_as_one_draw():
    # 2500 values: chunks of 1_000_000 // 2500 = 400 resamples, so 1000 resamples take three draws
    values = np.random.default_rng(4).normal(0.0, 1.0, size=2500)
    means = resample_means(values, 1000)
    assert percentile_ci(values, samples=1000) == tuple(np.quantile(means, [0.025, 0.975]))
    # 600,000 values: one resample a chunk; with 3 resamples and a 50% interval every resample moves a bound
    values = np.random.default_rng(5).normal(0.0, 1.0, size=600_000)
    got = percentile_ci(values, samples=3, confidence=0.5)  # before the reference: no freed array to reuse
    assert got == tuple(np.quantile(resample_means(values, 3), [0.25, 0.75]))


def test_95_percent_ci_covers_the_true_mean_about_95_percent_of_the_time_issue18():
    # 2000 data sets of 100 draws from N(0, 1): a 95% interval misses 0 in ~5% of them (the percentile bootstrap
    # a little more), a 90% one in ~10%. Seeded, so the count is the same on every run.
    rng = np.random.default_rng(18)
    data = rng.normal(0.0, 1.0, size=(2000, 100))
    covered = [lo <= 0.0 <= hi for lo, hi in (percentile_ci(d, samples=400, seed=i) for i, d in enumerate(data))]
    assert 0.925 <= np.mean(covered) <= 0.97
    # and its width is the normal theory's 2 * 1.96 * sd / sqrt(n), within the bootstrap's noise
    width = np.mean([hi - lo for lo, hi in (percentile_ci(d, samples=400, seed=i) for i, d in enumerate(data[:200]))])
    assert width == pytest.approx(2 * NormalDist().inv_cdf(0.975) / 10, rel=0.05)


def test_clustered_ci_is_the_percentile_ci_of_the_prompt_means_rounded_to_6_places():
    per_prompt = {f"p{i:02d}": v for i, v in enumerate(VALUES)}
    values = [v for v in per_prompt.values() for _ in range(3)] + [None]
    clusters = [p for p in per_prompt for _ in range(3)] + ["p00"]
    means = resample_means(VALUES, 401)
    got = clustered_ci(values, clusters, samples=401, confidence=0.9)
    assert got.pop("mc_error") > 0  # pinned in test_bootstrap.py
    assert got == {"mean": round(sum(VALUES) / 10, 6), "ci_low": round(means[20], 6),
                   "ci_high": round(means[380], 6), "n": 10}
    # two prompts are enough for an interval
    two = clustered_ci([0.0, 1.0], ["a", "b"], samples=401)
    assert (two["ci_low"], two["ci_high"]) == (0.0, 1.0)
    third = clustered_ci([0.0, 1.0, 1.0], ["a", "b", "c"], samples=401)
    assert third["mean"] == 0.666667  # 6 places, documented


def test_paired_diff_ci_and_sd_on_the_per_prompt_differences():
    a = {f"p{i:02d}": v for i, v in enumerate(VALUES)}
    b = {k: 0.5 for k in a}
    diffs = [v - 0.5 for v in VALUES]
    means = resample_means(diffs, 401)
    d = paired_diff(a, b, samples=401, confidence=0.9)
    assert (d["ci_low"], d["ci_high"]) == (round(means[20], 6), round(means[380], 6))
    assert d["sd"] == round(float(np.std(diffs, ddof=1)), 6)
    # two prompts: the sd is |d1 - d2| / sqrt(2)
    assert paired_diff({"x": 0.9, "y": 0.5}, {"x": 0.4, "y": 0.4}, samples=401)["sd"] == round(0.4 / 2 ** 0.5, 6)


def test_win_rate_ci_passes_the_confidence_on():
    outcomes = {f"p{i:02d}": o for i, o in enumerate([1, 0, 0.5, 1, 1, 0, 1, 0.5, 1, 0])}
    means = resample_means(list(outcomes.values()), 401)
    w = win_rate(outcomes, samples=401, confidence=0.9)
    assert (w["ci_low"], w["ci_high"]) == (round(means[20], 6), round(means[380], 6))


def test_summarize_ci_is_the_percentile_ci_and_a_single_prompt_is_a_point():
    means = resample_means(VALUES, 401)
    s = summarize(VALUES, 0.5, samples=401, confidence=0.9)
    assert (s["ci_low"], s["ci_high"]) == (round(means[20], 6), round(means[380], 6))
    assert s["pass_rate"] == 0.5 and s["n"] == 10 and s["samples"] == 10
    one = summarize([0.7, 0.8, None], 0.5, clusters=["a", "a", "b"])
    assert (one["mean"], one["ci_low"], one["ci_high"], one["n"], one["samples"]) == (0.75, 0.75, 0.75, 1, 2)
    two = summarize([0.0, 1.0], 0.5, samples=401)
    assert (two["ci_low"], two["ci_high"]) == (0.0, 1.0)


def test_change_word_needs_the_whole_ci_strictly_on_one_side_of_zero():
    assert change_word({"ci_low": 0.0, "ci_high": 0.3}) == "no detectable change"
    assert change_word({"ci_low": -0.3, "ci_high": 0.0}) == "no detectable change"
    assert change_word({"ci_low": 1e-9, "ci_high": 0.3}) == "better"
    assert change_word({"ci_low": -0.3, "ci_high": -1e-9}) == "worse"


def test_can_decide_a_ci_whose_top_touches_the_threshold_cannot_decide():
    assert not can_decide(0.6, 0.8, 0.8)  # a value of 0.8 would pass, 0.6 would fail
    assert can_decide(0.6, 0.7999, 0.8)


def test_half_width_and_detectable_difference_with_one_prompt():
    z, z_power = NormalDist().inv_cdf(0.975), NormalDist().inv_cdf(0.8)
    assert half_width(2.0, 1) == pytest.approx(z * 2.0)
    assert half_width(2.0, 4, confidence=0.9) == pytest.approx(NormalDist().inv_cdf(0.95))
    assert detectable_difference(2.0, 1) == pytest.approx((z + z_power) * 2.0)
    assert detectable_difference(2.0, 0) is None


def test_prompts_needed_does_not_round_float_noise_up_to_another_prompt():
    z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)
    # sd chosen so that (z * sd / delta) ** 2 is 9 up to float noise: 9 prompts, not 10
    assert prompts_needed(3 / z, 1.0) == 9
    assert prompts_needed(3.001 / z, 1.0) == 10


def test_rule_above_is_strict_and_min_is_not():
    metrics = {"sim": {"mean": 0.8, "pass_rate": 0.5, "ci_low": 0.7, "ci_high": 0.9, "n": 4}}
    rows, verdict = apply_rule([RuleCondition("sim", "mean", None, above=0.8)], metrics)
    assert verdict == "fail" and rows[0]["value"] == 0.8 and not rows[0]["ok"]
    assert apply_rule([RuleCondition("sim", "mean", None, above=0.79)], metrics)[1] == "pass"
    assert apply_rule([RuleCondition("sim", "mean", 0.8)], metrics)[1] == "pass"


def test_rule_says_why_a_condition_cannot_be_checked():
    metrics = {"sim": {"mean": 0.8, "pass_rate": None, "ci_low": 0.7, "ci_high": 0.9, "n": 4},
               "empty": {"mean": None, "pass_rate": None, "ci_low": None, "ci_high": None, "n": 0}}
    comparisons = {"baseline": {"sim": {"diff": None, "ci_low": None, "ci_high": None, "n": 1}}}

    def why(cond, comps=comparisons):
        rows, verdict = apply_rule([cond], metrics, comps)
        assert verdict == "fail" and not rows[0]["ok"] and rows[0]["value"] is None
        return rows[0]["why"]

    assert why(RuleCondition("sim", "mean", 0.5, vs="baseline")) == (
        "stat 'mean' cannot be used with vs: baseline; expected one of diff, ci_low, ci_high")
    assert why(RuleCondition("sim", "diff", 0.5)) == (
        "stat 'diff' cannot be used; expected one of mean, pass_rate, ci_low, ci_high")
    assert why(RuleCondition("sim", "diff", 0.0, vs="previous")) == "no previous round to compare 'sim' with"
    assert why(RuleCondition("sim", "diff", 0.0, vs="baseline"), None) == (
        "no untuned baseline (round 0) to compare 'sim' with")
    assert why(RuleCondition("sim", "diff", 0.0, vs="baseline")) == (
        "too few prompts scored on both sides for 'sim'")
    assert why(RuleCondition("sim", "pass_rate", 0.5)) == "no threshold for 'sim' in evaluate.thresholds"
    assert why(RuleCondition("empty", "pass_rate", 0.5)) == "no scored samples for 'empty'"
