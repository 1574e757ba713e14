"""Synthetic rows people marked bad leave the training set, and so do their near duplicates.

A synthetic row (one with ``generator`` or ``seed_id``, or an id that a label calls ``synthetic``)
whose latest label before this round is ``bad`` (``artifacts.feedback.labels_before``) is dropped,
and with it every other synthetic row whose instruction is an exact or near copy of a dropped one
(word-shingle Jaccard >= ``NEAR_DUPLICATE``, the MinHash index of ``dedup``). Coverage rows are
never dropped. Labels of a round take effect from the next round's training.
"""

from __future__ import annotations

from ..artifacts.feedback import labels_before
from ..store import Store

NEAR_DUPLICATE = 0.8  # synthesize.near_duplicate_threshold's default


def _synthetic(row: dict, kinds: dict) -> bool:
    return "generator" in row or "seed_id" in row or kinds.get(str(row.get("id"))) == "synthetic"


def drop_reviewed(store: Store, round_no: int, rows: list[dict]) -> tuple[list[dict], dict]:
    """(rows kept, ``{"bad": n, "near_duplicate": m}``): ``rows`` less the synthetic rows people marked
    bad and their near duplicates."""
    labels = labels_before(store, round_no)
    bad = {i for i, v in labels.items() if v.get("label") == "bad"}
    kinds = {i: v.get("kind") for i, v in labels.items()}
    counts = {"bad": 0, "near_duplicate": 0}
    marked = [r for r in rows if str(r.get("id")) in bad and _synthetic(r, kinds)]
    if not marked:
        return rows, counts
    from .dedup import NearDupIndex

    index = NearDupIndex(NEAR_DUPLICATE)
    index.add_many((str(r["id"]), str(r.get("instruction") or "")) for r in marked)
    kept = []
    for r in rows:
        if str(r.get("id")) in bad and _synthetic(r, kinds):
            counts["bad"] += 1
        elif _synthetic(r, kinds) and r.get("instruction") and index.match(str(r["instruction"])) is not None:
            counts["near_duplicate"] += 1
        else:
            kept.append(r)
    return kept, counts
