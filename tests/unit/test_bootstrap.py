"""Labels the bootstrap's seed cannot flip (issue #20, part 5): 10,000 resamples, the Monte-Carlo error
of the CI's bounds, "borderline" within 3 of those errors of 0, and the paired t-test and Wilcoxon
p-values beside.

With 1,000 resamples and the CI alone, a difference whose CI bound sits at 0 was "better" under some
seeds and "no detectable change" under others; these tests pin that it now gets one word under seeds
0..19.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pipeline.stats.bootstrap import SAMPLES, mc_error, percentile_ci_with_error, resample_means
from pipeline.stats.paired import MC_MARGIN, change_word, paired_diff, paired_p_values, percentile_ci

SEEDS = range(20)


def pairs(diffs) -> tuple[dict, dict]:
    """Per-prompt means ``a`` and ``b`` whose paired differences are ``diffs``."""
    rng = np.random.default_rng(7)
    b = {f"p{i:03d}": float(x) for i, x in enumerate(rng.uniform(0.2, 0.6, size=len(diffs)))}
    return {k: v + float(d) for (k, v), d in zip(b.items(), diffs)}, b


def borderline_diffs(n: int = 50) -> np.ndarray:
    """Paired differences whose 95% CI's lower bound is 0 up to Monte-Carlo error: noisy differences
    shifted by their own lower bound, from 400,000 resamples (shifting every difference moves every
    resample mean, so the bound, by exactly the shift)."""
    diffs = np.random.default_rng(20).normal(0.3, 1.0, size=n)
    low, _ = percentile_ci(diffs, samples=400_000, seed=99)
    return diffs - low


def labels(diffs, **kw) -> list[str]:
    a, b = pairs(diffs)
    return [change_word(paired_diff(a, b, seed=s, **kw)) for s in SEEDS]


def test_ten_thousand_resamples_unless_told_otherwise():
    assert SAMPLES == 10_000
    values = np.random.default_rng(1).normal(size=30)
    assert percentile_ci(values) == percentile_ci(values, samples=10_000)
    a, b = pairs(values)
    assert paired_diff(a, b) == paired_diff(a, b, samples=10_000)


def test_a_borderline_difference_is_borderline_under_20_seeds_issue20():
    diffs = borderline_diffs()
    assert labels(diffs) == ["borderline"] * 20
    # the CI alone (no mc_error: the label before issue #20) lets the seed decide
    a, b = pairs(diffs)
    strict = {change_word({k: d[k] for k in ("ci_low", "ci_high")})
              for d in (paired_diff(a, b, seed=s) for s in SEEDS)}
    assert strict == {"better", "no detectable change"}
    # its t-test agrees that it is on the edge of 5%
    assert 0.02 < paired_diff(a, b)["p_value"] < 0.1


def test_clearly_better_and_clearly_worse_keep_their_word_under_20_seeds():
    diffs = np.random.default_rng(21).normal(0.5, 1.0, size=50)  # CI about 0.25 to 0.8
    assert labels(diffs) == ["better"] * 20
    assert labels(-diffs) == ["worse"] * 20
    assert labels(diffs, samples=1000) == ["better"] * 20
    noise = np.random.default_rng(22).normal(0.0, 1.0, size=50)
    noise -= noise.mean()  # CI about -0.28 to +0.28
    assert labels(noise) == ["no detectable change"] * 20


def test_change_word_margin_is_3_mc_errors_either_side_of_zero():
    assert MC_MARGIN == 3
    e = 0.001
    assert change_word({"ci_low": 0.0031, "ci_high": 0.2, "mc_error": e}) == "better"
    assert change_word({"ci_low": 0.003, "ci_high": 0.2, "mc_error": e}) == "borderline"
    assert change_word({"ci_low": -0.003, "ci_high": 0.2, "mc_error": e}) == "borderline"
    assert change_word({"ci_low": -0.0031, "ci_high": 0.2, "mc_error": e}) == "no detectable change"
    assert change_word({"ci_low": -0.2, "ci_high": 0.001, "mc_error": e}) == "borderline"
    assert change_word({"ci_low": -0.2, "ci_high": -0.0031, "mc_error": e}) == "worse"
    # without mc_error (older metrics.json) or with none (a zero-width CI), the CI alone decides
    assert change_word({"ci_low": 0.0001, "ci_high": 0.2}) == "better"
    assert change_word({"ci_low": 0.0, "ci_high": 0.2, "mc_error": 0.0}) == "no detectable change"
    assert change_word({"ci_low": None, "ci_high": None, "mc_error": None}) == "no detectable change"


def test_mc_error_is_the_batch_means_error_of_the_bounds():
    values = np.random.default_rng(3).normal(size=40)
    means = resample_means(values, samples=10_000, seed=5)
    batches = means.reshape(20, 500)  # in draw order: batch i is resamples 500 i .. 500 i + 499
    se = [np.std(np.quantile(batches, q, axis=1), ddof=1) / np.sqrt(20) for q in (0.025, 0.975)]
    assert mc_error(means, 0.95) == pytest.approx(max(se), rel=1e-12)
    low, high, err = percentile_ci_with_error(values, samples=10_000, seed=5)
    assert (low, high) == tuple(np.quantile(means, [0.025, 0.975])) == percentile_ci(values, seed=5)
    assert err == mc_error(means, 0.95)
    # 10,001 resamples: the one left over is left out of the error, not of the bounds
    extra = resample_means(values, samples=10_001, seed=5)
    assert mc_error(extra, 0.95) == pytest.approx(max(se), rel=1e-12)


def test_mc_error_tracks_the_seed_to_seed_spread_and_shrinks_with_more_resamples():
    values = np.random.default_rng(4).normal(size=50)
    for samples in (1000, 10_000):
        runs = [percentile_ci_with_error(values, samples=samples, seed=s) for s in range(60)]
        spread = np.std([r[0] for r in runs], ddof=1)
        assert np.mean([r[2] for r in runs]) == pytest.approx(spread, rel=0.35)
    a, b = pairs(values)
    small = [paired_diff(a, b, samples=1000, seed=s)["mc_error"] for s in SEEDS]
    large = [paired_diff(a, b, samples=10_000, seed=s)["mc_error"] for s in SEEDS]
    assert np.mean(large) < 0.5 * np.mean(small)  # ~ 1 / sqrt(10)
    assert max(large) < min(small)


def test_p_values_are_scipys_paired_t_test_and_wilcoxon():
    rng = np.random.default_rng(8)
    a = {f"p{i}": float(x) for i, x in enumerate(rng.uniform(0.3, 0.9, size=25))}
    b = {k: v - float(d) for (k, v), d in zip(a.items(), rng.normal(0.05, 0.1, size=25))}
    d = paired_diff(a, b, samples=1000)
    keys = sorted(a)
    t = stats.ttest_rel([a[k] for k in keys], [b[k] for k in keys]).pvalue
    w = stats.wilcoxon([a[k] - b[k] for k in keys]).pvalue
    assert d["p_value"] == pytest.approx(t, rel=1e-5)
    assert d["p_wilcoxon"] == pytest.approx(w, rel=1e-5)
    # by hand: t = mean / (sd / sqrt(n)) on 24 degrees of freedom
    diffs = np.array([a[k] - b[k] for k in keys])
    t_stat = diffs.mean() / (diffs.std(ddof=1) / 5)
    assert d["p_value"] == pytest.approx(2 * stats.t.sf(abs(t_stat), 24), rel=1e-5)
    # 6 significant digits, not places: a tiny p-value is not 0
    assert 0 < paired_p_values([1.0 + 0.01 * i for i in range(30)])[0] < 1e-6


def test_few_or_degenerate_differences_give_none_not_a_crash():
    assert paired_p_values([]) == (None, None)
    assert paired_p_values([0.3]) == (None, None)
    assert paired_p_values([0.0, 0.0, 0.0]) == (None, None)  # no spread, nothing to rank
    p_t, p_w = paired_p_values([0.2, 0.2, 0.2, 0.2])  # no spread: t undefined, the signs still count
    assert p_t is None and p_w == pytest.approx(0.125)
    one = paired_diff({"x": 0.9}, {"x": 0.4})
    assert (one["mc_error"], one["p_value"], one["p_wilcoxon"]) == (None, None, None)
    assert percentile_ci_with_error([]) == (None, None, None)
    assert percentile_ci_with_error([0.25]) == (0.25, 0.25, 0.0)
    assert mc_error(np.array([0.5])) is None
    two = paired_diff({"x": 0.9, "y": 0.5}, {"x": 0.4, "y": 0.4}, samples=1000)
    assert two["p_value"] is not None and two["mc_error"] is not None
