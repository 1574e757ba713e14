"""Seeds from the canary (``synthesize.targeting: canary_losses``): the live prompts the latest ``duo canary``
showed the student losing on are preferred as synthesis seeds.

A loss is a shadowed prompt the pairwise judge gave to the service in both orders (``win`` 0), or, without a
judge, one whose decision metric fell below its ``evaluate.thresholds`` value (``artifacts.canary.losses``).
Each becomes a seed row with the question as it was asked (system prompt and earlier turns kept) and the
service's answer as the response; ``SHARE`` of the draws take one of them, the rest draw from the train split
as usual. A draw depends only on (config seed, round, attempt, index), so a rerun asks the same requests. The
test split is never touched: live prompts are production traffic, and the synthesized pairs are
decontaminated against the test prompts as always.
"""

from __future__ import annotations

from ..artifacts.canary import losses
from ..store import Store
from .seeds_prefer import Prefer

SHARE = 0.5
TARGETING = "canary_losses"


def seed_row(row: dict) -> dict:
    """A canary loss as a train-like row (``id`` ``canary:<group>``)."""
    return {"id": f"canary:{row['_key']}", "instruction": row["instruction"], "response": row["reference"],
            "system": row.get("system"), "messages": row.get("messages"), "category": row.get("category")}


def prefer_losses(cfg, store: Store, drawer, info: dict):
    """(drawer, info): under ``canary_losses``, ``drawer`` wrapped to prefer the latest canary's losses, and
    ``info["canary"]`` saying which canary and how many; otherwise both as they were."""
    if cfg.synthesize.targeting != TARGETING:
        return drawer, info
    name, rows = losses(store)
    if not rows:
        why = "no canary yet" if name is None else f"{name} showed no loss"
        return drawer, {**info, "targeting": "uniform", "why": f"{TARGETING}: {why}"}
    preferred = [seed_row(r) for r in rows]
    return Prefer(drawer, preferred, cfg.synthesize.seed, share=SHARE, tag="canary"), {
        **info, "canary": {"artifact": name, "losses": len(rows), "share": SHARE,
                           "seed_ids": [r["id"] for r in preferred][:50]}}
