"""What a round's scores prove: clustered summaries, paired comparisons with the untuned baseline
and the previous round, the test-size advice, and the pass rule checked against all of it. Pure
(numpy only): ``evaluate`` writes it into ``metrics.json`` and the report reads it back.

Every statistic treats the test *prompt* as the unit: sampled answers and judge
repeats of one prompt are averaged first, and bootstrap CIs resample prompts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..config_types import RuleCondition
from .aggregate import apply_rule, by_category, summarize_all
from .paired import (
    can_decide,
    change_word,
    detectable_difference,
    half_width,
    paired_diff,
    prompts_needed,
    prompts_to_halve,
)
from .parity import category_shares, per_prompt, shares


def compare(current: Sequence[Mapping], other: Sequence[Mapping] | None, metrics: Sequence[str], *,
            samples: int, confidence: float) -> dict:
    """metric -> paired difference (current - other) over the prompts both scored,
    with ``change`` in words."""
    if other is None:
        return {}
    out = {}
    for metric in metrics:
        a, b = per_prompt(current, metric), per_prompt(other, metric)
        if not b:
            continue
        d = paired_diff(a, b, samples=samples, confidence=confidence)
        out[metric] = {**d, "change": change_word(d)}
    return out


def baseline_summary(rows: Sequence[Mapping] | None, metrics: Sequence[str], *, samples: int,
                     confidence: float) -> dict:
    """metric -> ``{mean, ci_low, ci_high, n, mc_error}`` of the untuned baseline's scores."""
    if not rows:
        return {}
    scores = {m: [(r.get("scores") or {}).get(m) for r in rows] for m in metrics}
    scores = {m: v for m, v in scores.items() if any(x is not None for x in v)}
    full = summarize_all(scores, {}, clusters=[str(r.get("id")) for r in rows], samples=samples,
                         confidence=confidence)
    return {m: {k: s[k] for k in ("mean", "ci_low", "ci_high", "n", "mc_error")} for m, s in full.items()}


def power(summary: Mapping | None, diff: Mapping | None, *, threshold: float | None, confidence: float,
          delta: float | None) -> dict:
    """How well this test set can decide, for the decision metric: the CI half-width, the prompts needed to
    halve it, the difference it can detect (80% power) and the prompts needed to detect ``delta``."""
    if not summary or not summary.get("n"):
        return {}
    n = int(summary["n"])
    width = None if summary.get("ci_low") is None else (summary["ci_high"] - summary["ci_low"]) / 2
    sd = (diff or {}).get("sd")
    out = {"n": n, "ci_half_width": width, "prompts_to_halve": prompts_to_halve(n),
           "paired_sd": sd, "diff_half_width": half_width(sd, n, confidence),
           "detectable_difference": detectable_difference(sd, n, confidence),
           "can_decide": can_decide(summary.get("ci_low"), summary.get("ci_high"), threshold)
           if threshold is not None else None}
    if delta and sd:
        out["detect_difference"] = delta
        out["prompts_for_difference"] = prompts_needed(sd, delta, confidence=confidence)
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items()}


def decision_metric(conditions: Sequence[RuleCondition], configured: str | None,
                    metrics: Mapping) -> str | None:
    """The metric whose gains decide a plateau: the configured one, else the rule's first, else the first."""
    if configured:
        return configured
    for c in conditions:
        if c.metric in metrics:
            return c.metric
    return next(iter(metrics), None)


def build(rows: Sequence[Mapping], scores: Mapping[str, Sequence], *, ev, conditions: Sequence,
          baseline: Sequence[Mapping] | None, previous: Sequence[Mapping] | None,
          service: Sequence[Mapping] | None = None) -> dict:
    """The evidence part of ``metrics.json`` for one round.

    Args:
        rows: this round's ``scores.jsonl`` rows (``id``, ``category``, ``scores``).
        scores: metric -> per-row scores (same order as ``rows``).
        ev: the ``evaluate`` config section (thresholds,
            bootstrap_samples, confidence, decision_metric, ...).
        conditions: the pass rule in force.
        baseline, previous: ``scores.jsonl`` rows of round 0 and of the previous evaluated round (or None).
        service: the scored rows of the service's second answers (round 0's ``ceiling.jsonl``), or None:
            gives ``ceiling`` (their summaries), ``vs_service`` (this round minus them, paired),
            ``share_of_ceiling`` and ``ceiling_by_category``.
    """
    opts = {"samples": ev.bootstrap_samples, "confidence": ev.confidence}
    ids = [str(r.get("id")) for r in rows]
    summaries = summarize_all(scores, ev.thresholds, clusters=ids, **opts)
    metrics = list(scores)
    comparisons = {"baseline": compare(rows, baseline, metrics, **opts),
                   "previous": compare(rows, previous, metrics, **opts),
                   "service": compare(rows, service, metrics, **opts)}
    rule_rows, verdict = apply_rule(conditions, summaries, comparisons)
    key = decision_metric(conditions, ev.decision_metric, summaries)
    bound = next((c.get("min") if c.get("min") is not None else c.get("above") for c in rule_rows
                  if c["metric"] == key and not c.get("vs") and c["stat"] in ("mean", "ci_low")), None)
    diff = comparisons["baseline"].get(key) or comparisons["previous"].get(key)
    return {"metrics": summaries, "by_category": by_category([r.get("category") for r in rows], scores,
                                                            ev.thresholds),
            "baseline": baseline_summary(baseline, metrics, **opts), "vs_baseline": comparisons["baseline"],
            "vs_previous": comparisons["previous"], "vs_service": comparisons["service"],
            "ceiling": baseline_summary(service, metrics, **opts),
            "share_of_ceiling": shares(rows, service, metrics, **opts),
            "ceiling_by_category": category_shares(rows, service, metrics),
            "confidence": ev.confidence, "decision_metric": key,
            "power": power(summaries.get(key), diff, threshold=bound, confidence=ev.confidence,
                           delta=ev.detect_difference),
            "rule": rule_rows, "verdict": verdict}
