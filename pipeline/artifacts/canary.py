"""``canary/<UTC stamp>``: one ``duo canary`` verdict (``canary.json``, ``canary.md``, and ``prompts.jsonl``:
each shadowed prompt with the service's and the student's answers and their scores), and what later steps
read of it: the weight the latest verdict left the gateway at, and the prompts the student lost on
(``synthesize.targeting: canary_losses``).

Not in ``ARTIFACTS``: a canary reads a window of live traffic, so it is never reused; its declaration says
which config keys decide it.
"""

from __future__ import annotations

import json

from ..records import read_jsonl
from ..store import Store
from .base import Artifact, service_run_keys

PREFIX = "canary/"
REPORT, MARKDOWN, PROMPTS = "canary.json", "canary.md", "prompts.jsonl"

ARTIFACT = Artifact(
    "canary",
    reads=("rollout", "evaluate.metrics", "evaluate.thresholds", "evaluate.decision_metric",
           "evaluate.pairwise", "evaluate.pairwise_prompt", "evaluate.pairwise_schema",
           "evaluate.embedding_model", "evaluate.bootstrap_samples", "evaluate.confidence", "service.judge",
           "service.synthesize", "privacy"),
    unhashed=service_run_keys("judge") + service_run_keys("synthesize"),
)


def latest(store: Store) -> str | None:
    """The newest canary artifact's name (stamps sort in time order), or None."""
    names = [n for n in store.list(PREFIX) if n.count("/") == 1]
    return max(names) if names else None


def read_report(store: Store, name: str) -> dict:
    return json.loads((store.open(name) / REPORT).read_text(encoding="utf-8"))


def current_weight(store: Store) -> float | None:
    """The student weight the latest canary verdict set (its ``next_weight``), or None before any."""
    name = latest(store)
    return None if name is None else float(read_report(store, name)["verdict"]["next_weight"])


def losses(store: Store) -> tuple[str | None, list[dict]]:
    """(artifact, rows) of the prompts the latest canary showed the student losing on: a judged loss
    (``win`` 0), else, without a judge, a decision-metric score below its threshold. Each row keeps the
    question as asked and the service's answer (``instruction``, ``system``, ``messages``, ``reference``)."""
    name = latest(store)
    if name is None:
        return None, []
    report = read_report(store, name)
    metric, threshold = report["evidence"].get("decision_metric"), report["evidence"].get("threshold")
    rows = read_jsonl(store.open(name) / PROMPTS)

    def lost(row: dict) -> bool:
        if metric == "win_rate":
            return row.get("win") == 0.0
        score = (row.get("scores") or {}).get(metric)
        return score is not None and threshold is not None and score < threshold

    return name, [r for r in rows if lost(r)]
