"""``round-N/feedback``: what people said about round N's answers and synthetic rows
(``labels.jsonl``, ``skipped.jsonl``), and what later stages read of it.

Each label is ``{id, label: good|bad, reason, who, when, source}``; ``source`` is ``pr_body`` (a
ticked box of the report PR's review block), ``comment`` (a ``/duo label`` line in a PR comment,
review or review comment) or ``import`` (``duo feedback --import``). An id may be labelled more
than once: the latest label (by ``when``, file order breaking ties) is the one that counts
(:func:`latest`). ``docs/feedback.md`` describes the rules.
"""

from __future__ import annotations

from ..records import read_jsonl
from ..store import Store, artifact_name, round_of
from .base import Artifact

LABELS = "labels.jsonl"
SKIPPED = "skipped.jsonl"
VALUES = ("good", "bad")

# ``duo feedback`` reads GitHub (or a CSV file) each time it runs: the artifact is rewritten, never
# reused, so only the task names it. Not in ``ARTIFACTS`` (whose every stage the declared-inputs test
# runs): its declaration is used by the stage itself.
ARTIFACT = Artifact("feedback", reads=("task.name",))


def read_labels(store: Store, round_no: int) -> list[dict]:
    """Round ``round_no``'s labels in file order; [] when it has no feedback artifact."""
    name = artifact_name("feedback", round_no)
    return read_jsonl(store.open(name) / LABELS) if store.exists(name) else []


def latest(labels: list[dict]) -> dict[str, dict]:
    """id -> the label that counts: the latest by ``when`` (ISO 8601 text), the later line on a tie."""
    out: dict[str, dict] = {}
    for row in sorted(enumerate(labels), key=lambda p: (str(p[1].get("when") or ""), p[0])):
        out[str(row[1]["id"])] = row[1]
    return out


def feedback_artifacts(store: Store, round_no: int) -> list[str]:
    """The feedback artifacts of rounds before ``round_no`` (what round ``round_no``'s synthesis and
    training learn from), oldest first."""
    names = [n for n in store.list("round-") if n.endswith("/feedback")]
    return sorted((n for n in names if (k := round_of(n)) is not None and k < round_no), key=round_of)


def labels_before(store: Store, round_no: int) -> dict[str, dict]:
    """id -> the label that counts over every round before ``round_no``; a later round's label of the
    same id replaces an earlier one (the student answered again)."""
    out: dict[str, dict] = {}
    for name in feedback_artifacts(store, round_no):
        k = round_of(name)
        out.update({i: {**row, "round": k} for i, row in latest(read_labels(store, k)).items()})
    return out
