"""The report's cost table: each artifact of the round and the task as a whole, from the ledger (the
journal: every attempt of every run), with what the replies that never came cost at most."""

from __future__ import annotations

from ..artifacts.report import LATER
from ..config import Config
from ..manifest import Manifest
from ..stats.budget import spent_in_store
from ..store import Store, artifact_name


def _usage(m: Manifest) -> dict:
    u = m.usage or {}
    return {
        "name": m.artifact,
        "requests": int(u.get("requests") or 0),
        "input_tokens": int(u.get("input_tokens") or 0),
        "output_tokens": int(u.get("output_tokens") or 0),
        "cost_usd": float(u.get("cost_usd") or 0.0),
    }


def cost_summary(cfg: Config, store: Store, round_no: int) -> dict:
    """The round's and the task's spend from the ledger (the journal: every attempt of every run).
    A row's ``cost_usd`` is what was paid plus what the requests whose reply never arrived (a
    timeout, a dropped connection, a killed job) cost at most (``unknown_at_most_usd``, ``pending``
    of them), or its manifest's where that is more."""
    from ..llm.journal.sync import store_ledger

    own = {artifact_name(stage, round_no) for stage in LATER}
    ledger = store_ledger(store)
    rows = []
    for n in sorted(set(store.list(f"round-{round_no}/"))
                    | {n for n in ledger if n.startswith(f"round-{round_no}/")}):
        if n in own:
            continue
        row = (_usage(store.manifest(n)) if store.exists(n)
               else {"name": n, "requests": 0, "input_tokens": 0, "output_tokens": 0,
                     "cost_usd": 0.0})
        seen = ledger.get(n)
        # the journal saw every attempt of every run
        if seen is not None and seen.cost_usd + seen.unknown_at_most_usd >= row["cost_usd"]:
            row.update(requests=seen.requests, input_tokens=seen.input_tokens,
                       output_tokens=seen.output_tokens,
                       cost_usd=round(seen.cost_usd + seen.unknown_at_most_usd, 8))
        row.update(pending=seen.pending if seen else 0,
                   unknown_at_most_usd=round(seen.unknown_at_most_usd, 8) if seen else 0.0)
        if row["requests"] or row["cost_usd"] or row["pending"]:  # a stage that asked no service: no row
            rows.append(row)
    return {
        "round_artifacts": rows,
        "round_usd": round(sum(r["cost_usd"] for r in rows), 6),
        "total_usd": round(spent_in_store(store, up_to_round=round_no), 6),
        "budget_usd": cfg.budget.max_spend_usd,
        "unknown_at_most_usd": round(sum(r["unknown_at_most_usd"] for r in rows), 6),
        "pending": sum(r["pending"] for r in rows),
    }
