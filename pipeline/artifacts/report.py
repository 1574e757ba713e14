"""``round-N/report``: the round's report (``report.md``, ``metrics.json``, charts, ``pr_body.md``)."""

from __future__ import annotations

from ..config import Config
from ..store import Store, round_of
from ..templating import TEMPLATES_DIR
from .base import Artifact, service_run_keys

TEMPLATES = ("report.md.j2", "report_sections.md.j2", "pr_body.md.j2", "report_unevaluated.md.j2",
             "feedback_sections.md.j2")
# Stages that run after the report's inputs (promote records the review of the report's PR): not in its cost
# table nor its parents.
LATER = ("report", "decide", "promote")


def _parents(cfg: Config, store: Store, round_no: int) -> list[str]:
    """Every artifact up to this round, less the later report, decide and promote ones
    and the journal; an earlier round's promotion counts (the Adapter section names the promoted
    round)."""
    return [n for n in store.list() if (k := round_of(n) or 0) <= round_no and not n.startswith("journal")
            and (n.rsplit("/", 1)[-1] not in LATER or (n.endswith("/promote") and k < round_no))]


ARTIFACT = Artifact(
    "report",
    # tracking: the report links the round's run (``later``: off by default, older reports stay valid)
    reads=("task", "report", "evaluate", "budget", "synthesize", "student", "service.synthesize", "tracking"),
    unhashed=("report.dir", "student.cpu_threads", *service_run_keys("synthesize")),
    later=("budget.on_regression", "synthesize.min_yield", "report.review_worst", "report.review_random",
           "tracking"),
    files=lambda cfg: [TEMPLATES_DIR / t for t in TEMPLATES],
    parents=_parents,
)
