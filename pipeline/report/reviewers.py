"""What people said about the round in the report: the PR's review block (which answers, which boxes
are ticked already) and how well people and the judge agree (``stats.agreement``)."""

from __future__ import annotations

from ..artifacts.feedback import latest, read_labels
from ..config import Config
from ..feedback.review import review_samples
from ..stats.agreement import agreement
from ..store import Store


def review_for(cfg: Config, store: Store, round_no: int, rows: list[dict], metric: str | None) -> dict | None:
    """The review block's samples (``feedback.review.review_samples``), boxes ticked where the id's
    current label is good."""
    labels = latest(read_labels(store, round_no))
    return review_samples(rows, metric, cfg.report.review_worst, cfg.report.review_random,
                          f"{cfg.task.name}:{round_no}", labels)


def agreement_for(cfg: Config, store: Store, round_no: int, ev: dict, rows: list[dict]) -> dict | None:
    """People's labels of this round's test answers against the judge's call (decision-metric score at
    or above its per-answer threshold): ``stats.agreement.agreement`` plus ``metric``, ``threshold``,
    ``labels`` (all labels of the round) and ``people`` (who labelled). None when the round has no labels."""
    labels = latest(read_labels(store, round_no))
    if not labels:
        return None
    metric = ev.get("decision_metric")
    threshold = ((ev.get("metrics") or {}).get(metric) or {}).get("threshold") if metric else None
    base = {"metric": metric, "threshold": threshold, "labels": len(labels),
            "people": sorted({str(v.get("who")) for v in labels.values()})}
    pairs = [(labels[str(r["id"])]["label"] == "good", float(r["scores"][metric]) >= float(threshold))
             for r in rows if threshold is not None and str(r.get("id")) in labels
             and (r.get("scores") or {}).get(metric) is not None]
    if not pairs:
        return {**base, "n": 0}
    people, judge = zip(*pairs)
    return {**base, **agreement(people, judge, samples=cfg.evaluate.bootstrap_samples,
                                confidence=cfg.evaluate.confidence)}
