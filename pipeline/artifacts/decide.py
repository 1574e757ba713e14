"""``round-N/decide``: the decision after a round (``decision.json``), and its reader."""

from __future__ import annotations

import json

from ..config import Config
from ..errors import DuoError
from ..store import Store, artifact_name
from .base import Artifact, service_run_keys

# Keys added after decide artifacts were first made (the decision itself is in the fingerprint too).
LATER_KEYS = ("budget.on_regression", "synthesize.min_yield", "evaluate.bootstrap_samples")


def _parents(cfg: Config, store: Store, round_no: int) -> list[str]:
    """The round's evaluation; a round whose synthesis added no rows stops before
    fine-tuning: its synthesis."""
    evaluated = artifact_name("evaluate", round_no)
    return [evaluated if store.exists(evaluated) else artifact_name("synthesize", round_no)]


ARTIFACT = Artifact(
    "decide",
    # evaluate.confidence and bootstrap_samples: the paired difference with the best round so far
    reads=("budget", "synthesize", "service.synthesize", "evaluate.confidence", "evaluate.bootstrap_samples"),
    unhashed=service_run_keys("synthesize"),
    later=LATER_KEYS,
    parents=_parents,
)


def read_decision(store: Store, round_no: int) -> dict:
    """Round ``round_no``'s ``decision.json``; ArtifactMissing / DuoError when absent or unreadable."""
    name = artifact_name("decide", round_no)
    if not store.exists(name):
        raise store.missing(name, f"the decision of round {round_no}")
    path = store.open(name) / "decision.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DuoError(f"{path}: cannot read the round's decision ({exc})") from None
