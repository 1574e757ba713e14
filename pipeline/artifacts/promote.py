"""``round-N/promote``: a reviewer's verdict on the round's report PR (``promotion.json``), and the
readers that choose which round's adapter serves: the promoted round, else the best round (found
from the scores by :mod:`pipeline.stats.best`, a layer above, and passed in), else the latest
fine-tuned round."""

from __future__ import annotations

import json

from ..errors import DuoError
from ..store import Store, artifact_name, latest_round, round_of
from .base import Artifact

FILE = "promotion.json"

ARTIFACT = Artifact(
    "promote",
    reads=("report.promote_ref",),
    parents=lambda cfg, store, round_no: [
        n for n in [artifact_name("finetune", round_no)] if store.exists(n)
    ],
)


def read_promotion(store: Store, round_no: int) -> dict | None:
    """Round ``round_no``'s promotion record, or None when its PR was neither merged nor rejected yet."""
    name = artifact_name("promote", round_no)
    if not store.exists(name):
        return None
    try:
        return json.loads((store.open(name) / FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DuoError(f"{store.local_path(name) / FILE}: "
                       f"cannot read the promotion record ({exc})") from None


def promotions(store: Store) -> dict[int, dict]:
    """``round -> promotion record`` of every round whose report PR was merged or rejected."""
    rounds = sorted({round_of(n) for n in store.list("round-") if n.endswith("/promote")} - {None})
    return {r: rec for r in rounds if (rec := read_promotion(store, r)) is not None}


def production(records: dict[int, dict]) -> dict | None:
    """The round in production: the most recently promoted one (None when none was)."""
    promoted = [rec for rec in records.values() if rec.get("status") == "promoted"]
    return max(promoted, key=lambda rec: (rec.get("date") or "", rec["round"]), default=None)


def rejected_rounds(records: dict[int, dict]) -> set[int]:
    return {r for r, rec in records.items() if rec.get("status") == "rejected"}


def latest_finetuned_round(store: Store) -> int:
    """The highest round with a complete finetune artifact; DuoError when there is none."""
    round_no = latest_round(store, "finetune")
    if round_no is None:
        raise DuoError(f"no round has a finetune artifact in the {store.kind} store at {store.root}; "
                       f"run `duo finetune` (or `duo run`) first")
    return round_no


def choose_round(store: Store, best: tuple[int, str] | None = None, *,
                 up_to: int | None = None) -> tuple[int, str | None, str]:
    """(round, pinned commit or None, why) among the fine-tuned rounds up to ``up_to`` (default: all):
    the promoted round, else ``best`` (``(round, why)``: the best round, which
    :func:`pipeline.stats.best.adapter_round` finds from the scores), else the latest fine-tuned
    round; rejected rounds skipped."""
    finetuned = sorted(r for r in (round_of(n) for n in store.list("round-") if n.endswith("/finetune"))
                       if r is not None and (up_to is None or r <= up_to))
    if not finetuned:
        latest_finetuned_round(store)  # raises the one-line "run duo finetune first"
        raise DuoError(f"no round up to {up_to} has a finetune artifact")
    records = {r: rec for r, rec in promotions(store).items() if up_to is None or r <= up_to}
    prod = production(records)
    if prod is not None and prod["round"] in finetuned:
        pin = f" ({prod['ref']} at {prod['commit'][:12]})" if prod.get("commit") else ""
        why = f"promoted to production{pin} when its report PR was merged"
        return prod["round"], prod.get("commit"), why
    rejected = rejected_rounds(records)
    usable = [r for r in finetuned if r not in rejected]
    skipped = f"; rejected in review: {', '.join(map(str, sorted(rejected)))}" if rejected else ""
    if best is not None and best[0] in usable:
        return best[0], None, f"{best[1]} (none promoted{skipped})"
    why = f"the latest fine-tuned round (none promoted or evaluated{skipped})"
    return (usable or finetuned)[-1], None, why
