"""Aggregates of per-sample scores and the pass rule: means, pass rates, bootstrap CIs, per-category, verdict.

Pure Python and numpy, so the report and ``decide`` can recompute from ``scores.jsonl`` without any model.
A score of ``None`` means "not scored" (e.g. every judge repeat failed): it is left out of every aggregate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

STATS = ("mean", "pass_rate", "ci_low")


def _clean(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None]


def mean(values: Sequence[float | None]) -> float | None:
    vals = _clean(values)
    return sum(vals) / len(vals) if vals else None


def pass_rate(values: Sequence[float | None], threshold: float | None) -> float | None:
    """Share of scored samples at or above ``threshold``; None with no samples or no threshold."""
    vals = _clean(values)
    if not vals or threshold is None:
        return None
    return sum(v >= threshold for v in vals) / len(vals)


def bootstrap_ci(values: Sequence[float | None], *, samples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float | None, float | None]:
    """Percentile bootstrap CI of the mean: resample with replacement ``samples`` times (seeded)."""
    import numpy as np

    vals = np.asarray(_clean(values), dtype=float)
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


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None else round(x, nd)


def summarize(values: Sequence[float | None], threshold: float | None, *, samples: int = 1000,
              confidence: float = 0.95, seed: int = 0) -> dict:
    """``{"mean", "pass_rate", "threshold", "ci_low", "ci_high", "n"}`` of one metric (n counts scored samples)."""
    low, high = bootstrap_ci(values, samples=samples, confidence=confidence, seed=seed)
    return {"mean": _r(mean(values)), "pass_rate": _r(pass_rate(values, threshold)), "threshold": threshold,
            "ci_low": _r(low), "ci_high": _r(high), "n": len(_clean(values))}


def summarize_all(scores: Mapping[str, Sequence[float | None]], thresholds: Mapping[str, float], *,
                  samples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """metric -> summary, for every metric in ``scores``."""
    return {m: summarize(v, thresholds.get(m), samples=samples, confidence=confidence, seed=seed)
            for m, v in scores.items()}


def by_category(categories: Sequence[str | None], scores: Mapping[str, Sequence[float | None]],
                thresholds: Mapping[str, float]) -> dict:
    """category -> metric -> ``{"mean", "pass_rate", "n"}``; samples without a category go under ``"none"``."""
    groups: dict[str, list[int]] = {}
    for i, cat in enumerate(categories):
        groups.setdefault("none" if cat is None else str(cat), []).append(i)
    out: dict = {}
    for cat in sorted(groups):
        idx = groups[cat]
        out[cat] = {}
        for metric, values in scores.items():
            sub = [values[i] for i in idx]
            out[cat][metric] = {"mean": _r(mean(sub)), "pass_rate": _r(pass_rate(sub, thresholds.get(metric))),
                                "n": len(_clean(sub))}
    return out


def _cond(c) -> tuple[str, str, float]:
    if isinstance(c, Mapping):
        return c["metric"], c.get("stat", "mean"), float(c["min"])
    return c.metric, c.stat, float(c.min)


def apply_rule(conditions: Iterable, metrics: Mapping[str, dict]) -> tuple[list[dict], str]:
    """Check every condition ``{metric, stat, min}`` against metric summaries; verdict ``pass`` only if all hold.

    Returns one row per condition ``{"metric", "stat", "min", "value", "ok"}``, with ``"why"`` on a condition that
    cannot be checked (metric not computed, no scored samples, no threshold for a pass rate).
    """
    rows = []
    for c in conditions:
        metric, stat, minimum = _cond(c)
        row = {"metric": metric, "stat": stat, "min": minimum, "value": None, "ok": False}
        summary = metrics.get(metric)
        if stat not in STATS:
            row["why"] = f"unknown stat '{stat}'; expected one of {', '.join(STATS)}"
        elif summary is None:
            row["why"] = f"metric '{metric}' was not computed"
        elif summary.get(stat) is None:
            row["why"] = (f"no threshold for '{metric}' in evaluate.thresholds" if stat == "pass_rate"
                          and summary.get("n") else f"no scored samples for '{metric}'")
        else:
            row["value"] = summary[stat]
            row["ok"] = bool(summary[stat] >= minimum)
        rows.append(row)
    verdict = "pass" if rows and all(r["ok"] for r in rows) else "fail"
    return rows, verdict
