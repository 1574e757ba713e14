"""Aggregates of per-sample scores and the pass rule:
means, pass rates, bootstrap CIs, per-category, verdict.

Pure Python and numpy, so the report and ``decide`` can recompute from ``scores.jsonl`` without any model.
A score of ``None`` means "not scored" (e.g. every judge repeat failed): it is left out of every aggregate.
Prompt-clustered CIs, paired round-vs-round differences and test-set size estimates are in ``paired.py``
and re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ..config_types import RuleCondition
from .bootstrap import SAMPLES
from .paired import _clean, _r, clustered_ci, percentile_ci

STATS = ("mean", "pass_rate", "ci_low", "ci_high")
DIFF_STATS = ("diff", "ci_low", "ci_high")  # of a paired comparison (vs baseline / previous / service)
OTHER_SIDE = {"baseline": "untuned baseline (round 0)", "previous": "previous round",
              "service": "service ceiling (round 0's evaluation asks the service once more for each test "
                         "prompt when evaluate.ceiling is on and service.synthesize is configured)"}


def mean(values: Sequence[float | None]) -> float | None:
    vals = _clean(values)
    return sum(vals) / len(vals) if vals else None


def pass_rate(values: Sequence[float | None], threshold: float | None) -> float | None:
    """Share of scored samples at or above ``threshold``; None with no samples or no threshold."""
    vals = _clean(values)
    if not vals or threshold is None:
        return None
    return sum(v >= threshold for v in vals) / len(vals)


def bootstrap_ci(values: Sequence[float | None], *, samples: int = SAMPLES, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float | None, float | None]:
    """Percentile bootstrap CI of the mean: resample with replacement ``samples`` times (seeded).

    Treats every sample as independent; for several samples per prompt use ``clustered_ci``.
    """
    return percentile_ci(_clean(values), samples=samples, confidence=confidence, seed=seed)


def summarize(values: Sequence[float | None], threshold: float | None, *, clusters: Sequence | None = None,
              samples: int = SAMPLES, confidence: float = 0.95, seed: int = 0) -> dict:
    """``{"mean", "pass_rate", "threshold", "ci_low", "ci_high", "n", "samples", "mc_error"}`` of one metric.

    With ``clusters`` (the prompt id of each value) the mean is of per-prompt means and the CI
    resamples prompts, so several sampled answers or judge repeats of one prompt count as one
    prompt's evidence; ``n`` counts scored prompts and ``samples`` scored values. Without, every
    value is its own prompt. ``mc_error``: the Monte-Carlo error of the CI's bounds (``clustered_ci``).
    """
    clusters = list(range(len(values))) if clusters is None else list(clusters)
    ci = clustered_ci(values, clusters, samples=samples, confidence=confidence, seed=seed)
    return {"mean": ci["mean"], "pass_rate": _r(pass_rate(values, threshold)), "threshold": threshold,
            "ci_low": ci["ci_low"] if ci["n"] != 1 else ci["mean"], "ci_high": ci["ci_high"] if ci["n"] != 1
            else ci["mean"], "n": ci["n"], "samples": len(_clean(values)), "mc_error": ci["mc_error"]}


def summarize_all(scores: Mapping[str, Sequence[float | None]], thresholds: Mapping[str, float], *,
                  clusters: Sequence | None = None, samples: int = SAMPLES, confidence: float = 0.95,
                  seed: int = 0) -> dict:
    """metric -> summary, for every metric in ``scores``."""
    return {
        m: summarize(v, thresholds.get(m), clusters=clusters, samples=samples,
                     confidence=confidence, seed=seed)
        for m, v in scores.items()
    }


def by_category(categories: Sequence[str | None], scores: Mapping[str, Sequence[float | None]],
                thresholds: Mapping[str, float]) -> dict:
    """category -> metric -> ``{"mean", "pass_rate", "n"}``;
    samples without a category go under ``"none"``."""
    groups: dict[str, list[int]] = {}
    for i, cat in enumerate(categories):
        groups.setdefault("none" if cat is None else str(cat), []).append(i)
    out: dict = {}
    for cat in sorted(groups):
        idx = groups[cat]
        out[cat] = {}
        for metric, values in scores.items():
            sub = [values[i] for i in idx]
            out[cat][metric] = {"mean": _r(mean(sub)),
                                "pass_rate": _r(pass_rate(sub, thresholds.get(metric))),
                                "n": len(_clean(sub))}
    return out


def _cond(c: RuleCondition) -> dict:
    """A rule condition as the row the verdict reports: ``{metric, stat, vs, min, above}``."""
    out = {"metric": c.metric, "stat": c.stat or "mean", "vs": c.vs}
    for bound in ("min", "above"):
        value = getattr(c, bound)
        out[bound] = None if value is None else float(value)
    return out


def _why_unchecked(cond: dict, summary: Mapping | None) -> str | None:
    metric, stat, vs = cond["metric"], cond["stat"], cond["vs"]
    allowed = DIFF_STATS if vs else STATS
    if stat not in allowed:
        return (f"stat '{stat}' cannot be used{' with vs: ' + vs if vs else ''}; "
                f"expected one of {', '.join(allowed)}")
    if summary is None:
        return (f"no {OTHER_SIDE.get(vs, vs)} to compare '{metric}' with" if vs
                else f"metric '{metric}' was not computed")
    if summary.get(stat) is None:
        if stat == "pass_rate" and summary.get("n"):
            return f"no threshold for '{metric}' in evaluate.thresholds"
        return (f"too few prompts scored on both sides for '{metric}'" if vs
                else f"no scored samples for '{metric}'")
    return None


def apply_rule(conditions: Iterable[RuleCondition], metrics: Mapping[str, dict],
               comparisons: Mapping[str, Mapping[str, dict]] | None = None) -> tuple[list[dict], str]:
    """Check every condition against the metric summaries (or, for a condition with ``vs``, against
    the paired comparison ``comparisons[vs][metric]``); verdict ``pass`` only if all hold.

    Returns one row per condition ``{"metric", "stat", "vs", "min", "above", "value", "ok"}``, with
    ``"why"`` on a condition that cannot be checked (metric not computed, nothing to compare with,
    no threshold for a pass rate).
    """
    rows = []
    for c in conditions:
        cond = _cond(c)
        source = (comparisons or {}).get(cond["vs"]) or {} if cond["vs"] else metrics
        summary = source.get(cond["metric"])
        row = {**cond, "value": None, "ok": False}
        why = _why_unchecked(cond, summary)
        if why:
            row["why"] = why
        else:
            value = row["value"] = summary[cond["stat"]]
            row["ok"] = (bool(value > cond["above"]) if cond["above"] is not None
                         else bool(value >= cond["min"]))
        rows.append(row)
    verdict = "pass" if rows and all(r["ok"] for r in rows) else "fail"
    return rows, verdict
