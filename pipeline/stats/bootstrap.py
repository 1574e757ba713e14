"""The percentile bootstrap of a mean, and the Monte-Carlo error of its bounds (issue #20, part 5).

A bootstrap CI is itself random: another seed draws other resamples and moves both bounds a little. With
1,000 resamples a difference whose CI bound sits near 0 was called "better" under 13 of 20 seeds, so duo
resamples 10,000 times by default (``SAMPLES``; ``evaluate.bootstrap_samples``) and reports how far the
bounds may still move (``mc_error``), for ``paired.change_word`` to call such a difference "borderline"
instead of letting the seed decide. Vectorised numpy, drawn in chunks that bound memory;
``bench/bootstrap.py`` times it (about 10 ms a call at 50 prompts).
"""

from __future__ import annotations

from collections.abc import Sequence

SAMPLES = 10_000  # resamples unless told otherwise (evaluate.bootstrap_samples' default)
MC_BATCHES = 20  # batches of resamples whose quantiles give the Monte-Carlo error
_CHUNK_INDICES = 1_000_000  # resample indices drawn at once (8 MB), whatever the test-set size


def resample_means(values: Sequence[float], *, samples: int = SAMPLES, seed: int = 0):
    """The means of ``samples`` resamples (with replacement, seeded) of ``values``: a numpy array, in
    draw order.

    Drawn in chunks of about a million indices; the chunks draw the same resamples as one draw would.
    """
    import numpy as np

    vals = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = np.empty(samples, dtype=float)
    chunk = max(1, _CHUNK_INDICES // max(1, vals.size))
    for start in range(0, samples, chunk):
        stop = min(samples, start + chunk)
        idx = rng.integers(0, vals.size, size=(stop - start, vals.size))
        means[start:stop] = vals[idx].mean(axis=1)
    return means


def mc_error(means, confidence: float = 0.95, *, batches: int = MC_BATCHES) -> float | None:
    """Monte-Carlo standard error of the percentile CI's bounds, by batch means: the larger of the two
    bounds' errors.

    The resample means (in draw order, so each batch is an independent bootstrap of its own) are split
    into ``k = batches`` equal batches (up to ``k - 1`` left-over resamples are left out); each batch
    gives its own bounds, and a bound's error is the standard deviation of its ``k`` batch values over
    ``sqrt(k)``: a bound's spread from seed to seed shrinks as ``1 / sqrt`` of the resamples behind it,
    so this is the spread of the bound computed from all ``B``, from ``k`` bounds of ``B / k`` each.
    Measured over 300 seeds at 50, 200 and 1,000 prompts (``bench/bootstrap.py``), it is within 5% of
    the bounds' seed-to-seed standard deviation at 10,000 resamples, and ~10% under it at 1,000
    (batches of 50 resamples are few for a 2.5% quantile).

    Returns ``None`` with fewer than two resamples.
    """
    import numpy as np

    k = min(batches, len(means))
    if k < 2:
        return None
    alpha = (1.0 - confidence) / 2.0
    per_batch = np.asarray(means[: k * (len(means) // k)]).reshape(k, -1)
    bounds = np.quantile(per_batch, [alpha, 1.0 - alpha], axis=1)  # shape (2, k)
    return float(np.max(bounds.std(axis=1, ddof=1)) / np.sqrt(k))


def percentile_ci_with_error(values: Sequence[float], *, samples: int = SAMPLES, confidence: float = 0.95,
                             seed: int = 0) -> tuple[float | None, float | None, float | None]:
    """``percentile_ci``'s ``(low, high)`` and the Monte-Carlo error of those bounds (``mc_error``).

    ``(None, None, None)`` for no values; ``(v, v, 0.0)`` for a single value (no resampling, no noise).
    """
    import numpy as np

    if len(values) == 0:
        return None, None, None
    if len(values) == 1:
        return float(values[0]), float(values[0]), 0.0
    means = resample_means(values, samples=samples, seed=seed)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high), mc_error(means, confidence)


def percentile_ci(values: Sequence[float], *, samples: int = SAMPLES, confidence: float = 0.95,
                  seed: int = 0) -> tuple[float | None, float | None]:
    """Percentile bootstrap CI of the mean of ``values`` (no ``None``): resample ``samples`` times, seeded.

    Returns ``(None, None)`` for no values and ``(v, v)`` for a single value.
    """
    low, high, _ = percentile_ci_with_error(values, samples=samples, confidence=confidence, seed=seed)
    return low, high
