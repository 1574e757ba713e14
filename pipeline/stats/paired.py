"""Statistics for evidence: prompt-clustered CIs, paired round-vs-round differences, test-set size and power.

A test set has few prompts (15-60). Several sampled answers or judge repeats of one prompt are not
independent evidence, so every interval here resamples *prompts* (their per-prompt means), never
individual samples. A score of ``None`` means "not scored" and is left out everywhere. Pure Python
and numpy.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from statistics import NormalDist

OUTCOMES = {1.0: "wins", 0.5: "ties", 0.0: "losses"}


def _clean(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None]


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None else round(x, nd)


def percentile_ci(values: Sequence[float], *, samples: int = 1000, confidence: float = 0.95,
                  seed: int = 0) -> tuple[float | None, float | None]:
    """Percentile bootstrap CI of the mean of ``values`` (no ``None``): resample ``samples`` times, seeded.

    Returns ``(None, None)`` for no values and ``(v, v)`` for a single value.
    """
    import numpy as np

    vals = np.asarray(values, dtype=float)
    if vals.size == 0:
        return None, None
    if vals.size == 1:
        return float(vals[0]), float(vals[0])
    rng = np.random.default_rng(seed)
    means = np.empty(samples, dtype=float)
    # Chunks bound memory at ~1M indices whatever the test-set size.
    chunk = max(1, 1_000_000 // vals.size)
    for start in range(0, samples, chunk):
        stop = min(samples, start + chunk)
        idx = rng.integers(0, vals.size, size=(stop - start, vals.size))
        means[start:stop] = vals[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


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
    low, high = percentile_ci(per_prompt, samples=samples, confidence=confidence, seed=seed) if n >= 2 \
        else (None, None)
    return {"mean": _r(centre), "ci_low": _r(low), "ci_high": _r(high), "n": n}


def clustered_ci(values: Sequence[float | None], clusters: Sequence[Hashable], *, samples: int = 1000,
                 confidence: float = 0.95, seed: int = 0) -> dict:
    """Mean and bootstrap CI that resamples prompts, not samples.

    Args:
        values: one score per sample (``None`` = unscored, left out).
        clusters: the prompt id of each sample, parallel to ``values``.

    Returns:
        ``{"mean", "ci_low", "ci_high", "n"}``: ``n`` counts prompts with a score,
            ``mean`` is the mean of the
        per-prompt means, the CI is the percentile bootstrap
            of it. With ``n < 2`` the CI is ``None`` (one prompt
        says nothing about spread); with ``n == 0`` the mean is ``None`` too. Values rounded to 6 places.
    """
    means = cluster_means(values, clusters)
    return _mean_ci([means[c] for c in _ordered(means)], samples, confidence, seed)


def paired_diff(a: Mapping[Hashable, float | None], b: Mapping[Hashable, float | None], *,
                samples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Paired difference ``a - b`` over the prompts scored on both sides (e.g. this round vs the baseline).

    Args:
        a: ``{prompt_id: per-prompt mean}`` (see ``cluster_means``); ``None`` = unscored.
        b: the same for the other side.

    Returns:
        ``{"diff", "ci_low", "ci_high", "n", "sd"}``:
            ``n`` prompts present and non-None in both, ``diff`` the mean
        per-prompt difference, CI the percentile bootstrap over prompts,
            ``sd`` the sample standard deviation of
        the per-prompt differences. ``n == 1``: diff only, CI and sd ``None``; ``n == 0``: all ``None``.
        Values rounded to 6 places.
    """
    common = _ordered(k for k, v in a.items() if v is not None and b.get(k) is not None)
    diffs = [float(a[k]) - float(b[k]) for k in common]
    n = len(diffs)
    out = _mean_ci(diffs, samples, confidence, seed)
    sd = None
    if n >= 2:
        centre = sum(diffs) / n
        sd = math.sqrt(sum((d - centre) ** 2 for d in diffs) / (n - 1))
    return {"diff": out["mean"], "ci_low": out["ci_low"], "ci_high": out["ci_high"], "n": n, "sd": _r(sd)}


def change_word(d: Mapping) -> str:
    """Plain word for a paired difference (higher scores are better).

    Args:
        d: a ``paired_diff`` result (only ``ci_low`` and ``ci_high`` are read).

    Returns:
        ``"better"`` if the CI lies above 0, ``"worse"`` if below,
            else (or without a CI) ``"no detectable change"``.
    """
    low, high = d.get("ci_low"), d.get("ci_high")
    if low is not None and low > 0:
        return "better"
    if high is not None and high < 0:
        return "worse"
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


def win_rate(outcomes: Mapping[Hashable, float | None | Sequence[float | None]], *, samples: int = 1000,
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
