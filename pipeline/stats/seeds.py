"""How far apart the adapters of several training seeds score (``finetune.seeds``), so a round's change
can be told from seed noise. Pure: ``evaluate`` writes :func:`seed_spread` into ``metrics.json`` as
``seed_spread`` and the report sets it beside the round's paired difference (:func:`beside_change`).

Each seed's mean is taken as every other statistic is: the answers of one prompt are averaged first,
then the prompts. Only the prompts every seed has a score for count, so the seeds are compared on
the same prompts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import stdev

from .paired import cluster_means


def seeds_of(score_rows: Sequence[Mapping]) -> list:
    """The training seeds of the rows (``seed``), in the order they first appear; [] when none has one."""
    return list(dict.fromkeys(r["seed"] for r in score_rows if r.get("seed") is not None))


def seed_spread(score_rows: Sequence[Mapping], metrics: Sequence[str]) -> dict:
    """metric -> ``{"per_seed": {seed: mean}, "spread": max - min, "sd": sd of the seeds' means, "n":
    prompts}`` over the prompts every seed scored; {} unless the rows hold two seeds or more.

    Args:
        score_rows: ``scores.jsonl`` rows (``id``, ``seed``, ``scores``).
        metrics: the metrics to compare; one no seed scored on a common prompt is left out.
    """
    seeds = seeds_of(score_rows)
    if len(seeds) < 2:
        return {}
    out = {}
    for metric in metrics:
        means = {}
        for seed in seeds:
            rows = [r for r in score_rows if r.get("seed") == seed]
            means[seed] = cluster_means([(r.get("scores") or {}).get(metric) for r in rows],
                                        [str(r.get("id")) for r in rows])
        common = set.intersection(*(set(m) for m in means.values()))
        if not common:
            continue
        per_seed = {str(s): sum(m[c] for c in common) / len(common) for s, m in means.items()}
        values = list(per_seed.values())
        out[metric] = {"per_seed": {s: round(v, 6) for s, v in per_seed.items()},
                       "spread": round(max(values) - min(values), 6),
                       "sd": round(stdev(values), 6), "n": len(common)}
    return out


def beside_change(spread: Mapping, diffs: Mapping) -> list[dict]:
    """One row per metric of ``spread`` (``seed_spread``) with the round's paired difference
    ``diffs[metric]`` (``vs_previous`` or ``vs_baseline``) beside it: ``within_noise`` is True when the
    difference is no larger than the spread between seeds, None when there is no difference to compare."""
    rows = []
    for metric, s in spread.items():
        d = diffs.get(metric) or {}
        diff = d.get("diff")
        rows.append({"metric": metric, "per_seed": s["per_seed"], "spread": s["spread"], "sd": s["sd"],
                     "n": s["n"], "diff": d or None,
                     "within_noise": None if diff is None else abs(diff) <= s["spread"]})
    return rows
