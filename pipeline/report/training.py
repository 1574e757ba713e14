"""The report's *Data* section, gathered from the store: the coverage split, each round's
synthesis (rows kept, removed by reason, the seed mix per category, personal data scrubbed) and
what the trainer really used.

Reads the ``prepare``, ``round-k/synthesize``, ``round-N/finetune`` and ``round-N/evaluate``
manifests; no rendering.
"""

from __future__ import annotations

from ..artifacts.finetune import cut_counts
from ..data.dedup import REASONS
from ..data.hygiene import REASONS as DROPS
from ..data.pairs import EXTRA_REASONS
from ..data.structured_pairs import DROP_REASONS as INVALID
from ..store import Store, artifact_name

# Every reason synthesize removes a pair for, in the report's column order.
ALL_REASONS = REASONS + EXTRA_REASONS


def data_summary(store: Store, round_no: int) -> dict:
    prep = None
    if store.exists("prepare"):
        c = store.manifest("prepare").counts or {}
        prep = {"train": c.get("train"), "test": c.get("test"), "bad": c.get("bad") or c.get("bad_rows"),
                "with_system": c.get("with_system"), "multi_turn": c.get("multi_turn"),
                # data.hygiene's drops by reason, and the conversations kept whole by the split
                "dropped": {r: n for r in DROPS if (n := (c.get("dropped") or {}).get(r))},
                "sessions": c.get("sessions") if (store.manifest("prepare").extra or {}).get(
                    "split_by") == "conversation" else None}
    rounds = [r for k in range(1, round_no + 1) if (r := synthesis_round(store, k))]
    synthetic = sum(r["kept"] for r in rounds)
    train = prep["train"] if prep and prep["train"] is not None else None
    return {"prepare": prep, "rounds": rounds, "this_round": any(r["round"] == round_no for r in rounds),
            "synthetic_total": synthetic, "train_total": None if train is None else train + synthetic,
            "trained": trained_counts(store, round_no), "scrubbed": scrubbed(store, round_no)}


def synthesis_round(store: Store, k: int) -> dict | None:
    """Round ``k``'s synthesis: rows kept and requested, removed by reason, and the
    seeds drawn per category."""
    name = artifact_name("synthesize", k)
    if not store.exists(name):
        return None
    m = store.manifest(name)
    c, x = m.counts or {}, m.extra or {}
    removed = c.get("removed") if isinstance(c.get("removed"), dict) else {}
    mix = c.get("seed_mix") if isinstance(c.get("seed_mix"), dict) else {}
    return {"round": k, "kept": int(c.get("kept") or 0), "requested": c.get("requested"),
            "removed": {r: int(removed.get(r) or 0) for r in ALL_REASONS},
            "hygiene": {r: n for r in DROPS if (n := (c.get("hygiene") or {}).get(r))},
            # a structured task's pairs not of its kind (invalid JSON, off-schema, unknown label or tool)
            "invalid": {r: n for r in INVALID if (n := int(removed.get(r) or 0))}, "kind": x.get("kind"),
            "seed_mix": dict(sorted(mix.items(), key=lambda kv: (-kv[1], kv[0]))),
            "targeting": (x.get("seeds") or {}).get("targeting"), "length_band": x.get("length_band")}


def scrubbed(store: Store, round_no: int) -> dict:
    """Personal data taken out of what this round sent to a service, by stage and type (only types found)."""
    found = {}
    for stage in ("synthesize", "evaluate"):
        name = artifact_name(stage, round_no)
        if store.exists(name):
            counts = (store.manifest(name).extra or {}).get("scrubbed")
            if counts is not None:
                found[stage] = {t: int(n) for t, n in sorted(counts.items()) if n}
    return found


def trained_counts(store: Store, round_no: int) -> dict | None:
    """What the trainer really used (finetune manifest): rows with an answer inside ``max_length``,
    and the rows ``max_length`` cut (answers truncated, rows dropped: the prompt alone too long),
    with ``warn`` above 10%."""
    name = artifact_name("finetune", round_no)
    if round_no < 1 or not store.exists(name):
        return None
    m = store.manifest(name)
    c = m.counts or {}
    given = int(c.get("rows_given") or c.get("train_rows") or 0)
    truncated, dropped = cut_counts(c)
    lengths = (m.extra or {}).get("lengths") or {}
    return {
        "rows": c.get("train_rows"),
        "given": given,
        "truncated": truncated,
        "prompt_too_long": dropped,
        "synthetic": c.get("synthetic_rows"),
        "max_length": c.get("max_length") or lengths.get("max_length"),
        "max_length_rule": lengths.get("max_length_rule"),
        "warn": bool(given) and (truncated + dropped) / given > 0.1,
    }
