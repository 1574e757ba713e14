"""Statistics for evidence: prompt-clustered CIs, paired round-vs-round differences, test-set size and power.

A test set has few prompts (15-60). Several sampled answers or judge repeats of one prompt are not
independent evidence, so every interval here resamples *prompts* (their per-prompt means), never
individual samples. A score of ``None`` means "not scored" and is left out everywhere. The bootstrap
itself (numpy) is in ``bootstrap.py``; scipy gives the p-values, imported only when one is computed.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from statistics import NormalDist

from .bootstrap import SAMPLES, percentile_ci, percentile_ci_with_error

# percentile_ci is re-exported: callers import it from here
__all__ = ["MC_MARGIN", "OUTCOMES", "can_decide", "change_word", "cluster_means", "clustered_ci",
           "detectable_difference", "half_width", "paired_diff", "paired_p_values", "percentile_ci",
           "prompts_needed", "prompts_to_halve", "win_rate"]

OUTCOMES = {1.0: "wins", 0.5: "ties", 0.0: "losses"}


def _clean(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None]


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None else round(x, nd)


def _ordered(keys: Iterable[Hashable]) -> list:
    # Sorted by text so that results do not depend on the order samples or dict entries came in.
    return sorted(keys, key=str)


def cluster_means(values: Sequence[float | None], clusters: Sequence[Hashable]) -> dict:
    """Per-prompt mean of the scored values.

    Args:
        values: one score per sample; ``None`` (unscored) is left out.
        clusters: the prompt id of each sample, parallel to ``values``.

    Returns:
        ``{prompt_id: mean}``; a prompt whose values are all ``None`` is absent.
    """
    if len(values) != len(clusters):
        raise ValueError(f"{len(values)} values but {len(clusters)} cluster ids")
    groups: dict = {}
    for v, c in zip(values, clusters):
        if v is not None:
            groups.setdefault(c, []).append(float(v))
    return {c: sum(vs) / len(vs) for c, vs in groups.items()}


def _mean_ci(per_prompt: Sequence[float], samples: int, confidence: float, seed: int) -> dict:
    n = len(per_prompt)
    centre = sum(per_prompt) / n if n else None
    low, high, err = (None, None, None)
    if n >= 2:
        low, high, err = percentile_ci_with_error(per_prompt, samples=samples, confidence=confidence,
                                                  seed=seed)
    return {"mean": _r(centre), "ci_low": _r(low), "ci_high": _r(high), "n": n, "mc_error": _r(err)}


def clustered_ci(values: Sequence[float | None], clusters: Sequence[Hashable], *, samples: int = SAMPLES,
                 confidence: float = 0.95, seed: int = 0) -> dict:
    """Mean and bootstrap CI that resamples prompts, not samples.

    Args:
        values: one score per sample (``None`` = unscored, left out).
        clusters: the prompt id of each sample, parallel to ``values``.

    Returns:
        ``{"mean", "ci_low", "ci_high", "n", "mc_error"}``: ``n`` counts prompts with a score, ``mean``
        is the mean of the per-prompt means, the CI is the percentile bootstrap of it and ``mc_error``
        the Monte-Carlo error of its bounds (``bootstrap.mc_error``). With ``n < 2`` the CI and
        ``mc_error`` are ``None`` (one prompt says nothing about spread); with ``n == 0`` the mean is
        ``None`` too. Rounded to 6 places.
    """
    means = cluster_means(values, clusters)
    return _mean_ci([means[c] for c in _ordered(means)], samples, confidence, seed)


def _p(x: float) -> float | None:
    # 6 significant digits (not places: a p-value of 1e-9 is not 0); nan (undefined) is None
    return None if x is None or math.isnan(x) else float(f"{x:.6g}")


def paired_p_values(diffs: Sequence[float]) -> tuple[float | None, float | None]:
    """Two-sided p-values of "the mean per-prompt difference is 0": the paired t-test's and the Wilcoxon
    signed-rank test's (scipy's defaults: zero differences dropped, exact below 50 prompts without ties).

    A cross-check beside the bootstrap CI, not what ``change_word`` reads. ``None`` under 2 differences,
    for the t-test when all differences are equal (no spread: t is undefined), for Wilcoxon when all
    are 0.
    """
    if len(diffs) < 2:
        return None, None
    import warnings

    from scipy import stats  # lazily: scipy takes a moment to import, and the CLI must start fast

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant data, ties and zeros: the p-value says so (nan or not)
        t = stats.ttest_1samp(diffs, 0.0).pvalue if len(set(diffs)) > 1 else None
        try:
            w = stats.wilcoxon(diffs).pvalue if any(diffs) else None
        except ValueError:  # older scipy: every difference 0 after dropping zeros
            w = None
    return _p(None if t is None else float(t)), _p(None if w is None else float(w))


def paired_diff(a: Mapping[Hashable, float | None], b: Mapping[Hashable, float | None], *,
                samples: int = SAMPLES, confidence: float = 0.95, seed: int = 0) -> dict:
    """Paired difference ``a - b`` over the prompts scored on both sides (e.g. this round vs the baseline).

    Args:
        a: ``{prompt_id: per-prompt mean}`` (see ``cluster_means``); ``None`` = unscored.
        b: the same for the other side.

    Returns:
        ``{"diff", "ci_low", "ci_high", "n", "sd", "mc_error", "p_value", "p_wilcoxon"}``: ``n``
        prompts present and non-None in both, ``diff`` the mean per-prompt difference, CI the
        percentile bootstrap over prompts, ``sd`` the sample standard deviation of the per-prompt
        differences, ``mc_error`` the Monte-Carlo error of the CI's bounds (``bootstrap.mc_error``),
        ``p_value`` and ``p_wilcoxon`` the paired t-test's and the Wilcoxon signed-rank test's
        two-sided p-values (``paired_p_values``). ``n == 1``: diff only, the rest ``None``;
        ``n == 0``: all ``None``. Rounded to 6 places (p-values to 6 significant digits).
    """
    common = _ordered(k for k, v in a.items() if v is not None and b.get(k) is not None)
    diffs = [float(a[k]) - float(b[k]) for k in common]
    n = len(diffs)
    out = _mean_ci(diffs, samples, confidence, seed)
    sd = None
    if n >= 2:
        centre = sum(diffs) / n
        sd = math.sqrt(sum((d - centre) ** 2 for d in diffs) / (n - 1))
    p_value, p_wilcoxon = paired_p_values(diffs)
    return {"diff": out["mean"], "ci_low": out["ci_low"], "ci_high": out["ci_high"], "n": n, "sd": _r(sd),
            "mc_error": out["mc_error"], "p_value": p_value, "p_wilcoxon": p_wilcoxon}


MC_MARGIN = 3  # a CI bound within this many Monte-Carlo errors of 0 is "borderline"


def change_word(d: Mapping) -> str:
    """Plain word for a paired difference (higher scores are better), that the bootstrap's seed cannot flip.

    The margin is ``MC_MARGIN * mc_error`` = 3 Monte-Carlo errors of the CI's bounds: another seed
    moves a bound by more than 3 of its standard errors about 0.3% of the time, so a CI that clears 0
    by the margin would clear 0 under (almost) every seed, and two seeds can disagree only between
    neighbouring words (better and borderline, borderline and no detectable change), never between
    better and no detectable change or worse.

    Args:
        d: a ``paired_diff`` result (``ci_low``, ``ci_high`` and ``mc_error`` are read; without
            ``mc_error``, or with 0, the margin is 0: the CI alone decides, as before ``mc_error``).

    Returns:
        ``"better"`` if the CI lies above 0 by more than the margin, ``"worse"`` if below by more;
        ``"borderline"`` if a bound is within the margin of 0 (either side); else (or without a CI)
        ``"no detectable change"``.
    """
    low, high = d.get("ci_low"), d.get("ci_high")
    margin = MC_MARGIN * (d.get("mc_error") or 0.0)
    if low is not None and low > margin:
        return "better"
    if high is not None and high < -margin:
        return "worse"
    if margin > 0 and any(bound is not None and abs(bound) <= margin for bound in (low, high)):
        return "borderline"
    return "no detectable change"


def _z(p: float) -> float:
    return NormalDist().inv_cdf(p)


def half_width(sd: float | None, n: int, confidence: float = 0.95) -> float | None:
    """Normal-approximation CI half-width ``z * sd / sqrt(n)``; ``None`` without an sd or with ``n < 1``."""
    if sd is None or n < 1:
        return None
    return _z(1.0 - (1.0 - confidence) / 2.0) * sd / math.sqrt(n)


def prompts_to_halve(n: int) -> int:
    """Prompts needed to halve a CI's width from ``n`` prompts (width ~ 1/sqrt(n)): ``4 * n``."""
    return 4 * n


def prompts_needed(sd: float, delta: float, *, confidence: float = 0.95, power: float = 0.8) -> int:
    """Prompts a paired test needs to detect a true difference ``delta`` (normal approximation).

    Args:
        sd: standard deviation of per-prompt differences (``paired_diff``'s ``sd``).
        delta: the smallest difference worth detecting, > 0, in score units.
        confidence: two-sided confidence level (1 - alpha).
        power: chance of detecting a true difference of ``delta``.

    Returns:
        ``ceil(((z_{1-alpha/2} + z_power) * sd / delta) ** 2)``, at least 2.
    """
    if delta <= 0:
        raise ValueError(f"delta must be > 0, got {delta}")
    k = (_z(1.0 - (1.0 - confidence) / 2.0) + _z(power)) * sd / delta
    return max(2, math.ceil(k * k - 1e-9))  # the epsilon keeps float noise from adding a prompt


def detectable_difference(sd: float | None, n: int, confidence: float = 0.95,
                          power: float = 0.8) -> float | None:
    """Smallest true paired difference ``n`` prompts detect with ``power``:
    ``(z_{1-alpha/2} + z_power) * sd / sqrt(n)``.

    Returns ``None`` without an sd or with ``n < 1``.
    """
    if sd is None or n < 1:
        return None
    return (_z(1.0 - (1.0 - confidence) / 2.0) + _z(power)) * sd / math.sqrt(n)


def can_decide(value_ci_low: float | None, value_ci_high: float | None, threshold: float | None) -> bool:
    """Whether the test set decides pass (value >= threshold) vs fail for a value with this CI.

    Returns:
        ``True`` when the whole CI is at/above the threshold or the whole CI is below it; ``False`` when it
        straddles the threshold, or when the CI or the threshold is missing.
    """
    if value_ci_low is None or value_ci_high is None or threshold is None:
        return False
    return value_ci_low >= threshold or value_ci_high < threshold


def win_rate(outcomes: Mapping[Hashable, float | None | Sequence[float | None]], *, samples: int = SAMPLES,
             confidence: float = 0.95, seed: int = 0) -> dict:
    """Pairwise-judging win rate with a prompt-clustered CI.

    Args:
        outcomes: ``{prompt_id: outcome or list of outcomes}``, each 1 (win), 0.5 (tie), 0 (loss) or
            ``None`` (unjudged, left out); several per prompt (samples, repeats, swapped orders) are
            averaged per prompt.

    Returns:
        ``clustered_ci`` of the outcomes (``mean`` is the win rate, ties counting half) plus ``"wins"``,
        ``"ties"``, ``"losses"`` counts of individual outcomes.
    """
    values: list[float | None] = []
    clusters: list = []
    for prompt, out in outcomes.items():
        for v in (out if isinstance(out, Sequence) else [out]):
            if v is not None and float(v) not in OUTCOMES:
                raise ValueError(f"outcome {v!r} for prompt {prompt!r}: "
                                 "expected 1 (win), 0.5 (tie) or 0 (loss)")
            values.append(v)
            clusters.append(prompt)
    counts = {name: sum(1 for v in values if v is not None and float(v) == key)
              for key, name in OUTCOMES.items()}
    return {**clustered_ci(values, clusters, samples=samples, confidence=confidence, seed=seed), **counts}
