"""Seeds steered by people's labels: train rows like the prompts whose answers people marked bad are
preferred as synthesis seeds.

Seeds come only from the train split (the test prompts people labelled are never seeds, nor sent to
the service). For each test prompt whose latest label before this round is ``bad``
(``artifacts.feedback.labels_before``), the ``NEIGHBOURS`` train rows whose instructions share the
most word shingles with it (Jaccard of ``dedup.shingles``, at least ``MIN_SIMILARITY``) are
preferred: ``SHARE`` of the draws take one of them, the rest draw as ``synthesize.targeting`` says. A
draw depends only on (config seed, round, attempt, index), so a rerun asks the same requests.
"""

from __future__ import annotations

from ..artifacts.evaluate import read_scores
from ..artifacts.feedback import labels_before
from ..store import Store
from .dedup import shingles
from .seeds_prefer import Prefer

NEIGHBOURS = 3
MIN_SIMILARITY = 0.1
SHARE = 0.5


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def bad_prompts(store: Store, round_no: int) -> list[dict]:
    """Test prompts (``id``, ``instruction``) whose latest label before ``round_no`` is bad."""
    labels = {i: v for i, v in labels_before(store, round_no).items()
              if v.get("label") == "bad" and v.get("kind", "test") == "test"}
    out: dict[str, dict] = {}
    for k in sorted({int(v["round"]) for v in labels.values()}):
        for row in read_scores(store, k) or []:
            if str(row.get("id")) in labels and labels[str(row["id"])]["round"] == k:
                out[str(row["id"])] = {"id": str(row["id"]), "instruction": str(row.get("instruction") or "")}
    return list(out.values())


def preferred_rows(train: list[dict], prompts: list[dict]) -> list[dict]:
    """The train rows nearest each prompt (up to ``NEIGHBOURS`` each, in train order, no repeats)."""
    sets = [shingles(str(r.get("instruction") or "")) for r in train]
    chosen: set[int] = set()
    for p in prompts:
        target = shingles(p["instruction"])
        similar = ((s, i) for i, s in enumerate(_jaccard(target, t) for t in sets) if s >= MIN_SIMILARITY)
        scored = sorted(similar, key=lambda x: (-x[0], x[1]))
        chosen.update(i for _, i in scored[:NEIGHBOURS])
    return [train[i] for i in sorted(chosen)]


def prefer_bad(store: Store, round_no: int, train: list[dict], drawer, info: dict, seed: int):
    """(drawer, info): ``drawer`` wrapped to prefer the train rows near prompts people marked bad, and
    ``info["feedback"]`` saying how many (absent when no label says bad)."""
    prompts = bad_prompts(store, round_no)
    if not prompts:
        return drawer, info
    rows = preferred_rows(train, prompts)
    info = {**info, "feedback": {"bad_prompts": len(prompts), "preferred_seeds": len(rows),
                                 "share": SHARE if rows else 0.0,
                                 "seed_ids": [str(r.get("id")) for r in rows][:50]}}
    return (Prefer(drawer, rows, seed, share=SHARE, tag="feedback") if rows else drawer), info
