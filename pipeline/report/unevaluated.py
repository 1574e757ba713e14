"""What the report of a round that was not evaluated shows: its synthesis kept no rows, so it was
never fine-tuned, answered or scored. Gathered from the store like :func:`pipeline.report.data.gather`
(no rendering here): the synthesis and what removed its pairs, the decision, the best round so far
and the adapter to use, the cost; no metrics and no charts.
"""

from __future__ import annotations

from ..artifacts.synthesize import no_new_rows
from ..config import Config
from ..store import Store, artifact_name
from .adapter import adapter_choice
from .costs import cost_summary
from .data import decision_now
from .lineage import pinned
from .training import ALL_REASONS, data_summary


def unevaluated(store: Store, round_no: int) -> bool:
    """True for a round that stopped before fine-tuning: its synthesis kept no rows and nothing
    evaluated it."""
    return not store.exists(artifact_name("evaluate", round_no)) and no_new_rows(store, round_no)


def gather_unevaluated(cfg: Config, store: Store, round_no: int) -> dict:
    """Everything ``templates/report_unevaluated.md.j2`` needs; ``ev`` is None (nothing was scored)."""
    data = data_summary(store, round_no)
    synthesis = pinned(store, artifact_name("synthesize", round_no))
    return {
        "task": cfg.task.name,
        "round": round_no,
        "is_base": False,
        "evaluated": False,
        "student": cfg.student.model,
        "ev": None,
        "conf": f"{cfg.evaluate.confidence:.0%}",
        "decision": decision_now(cfg, store, round_no),
        "cost": cost_summary(cfg, store, round_no),
        "data": data,
        "this_round": next((r for r in data["rounds"] if r["round"] == round_no), None),
        "reasons": ALL_REASONS,
        "adapter": None,
        "use_adapter": adapter_choice(cfg, store, round_no, None),
        "synthesis_artifact": synthesis,
        "charts": {},
        "worst": [],
    }
