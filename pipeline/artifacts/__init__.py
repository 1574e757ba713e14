"""Every artifact the pipeline writes, declared once (one module each, with its readers beside it).

``ARTIFACTS[stage]`` says what the stage's artifact is made from;
``ARTIFACTS[stage].inputs(cfg, store, round)`` derives its fingerprint, and ``reusable`` is the one
rule that reuses a complete artifact when nothing changed. Stages import artifacts (declarations and
readers), never each other.
"""

from __future__ import annotations

from . import decide, evaluate, finetune, infer, prepare, promote, report, synthesize
from .base import Artifact, StageInputs, carried_cost, file_digest, reusable

ARTIFACTS: dict[str, Artifact] = {
    m.ARTIFACT.stage: m.ARTIFACT
    for m in (prepare, synthesize, finetune, infer, evaluate, report, decide, promote)
}

__all__ = ["ARTIFACTS", "Artifact", "StageInputs", "carried_cost", "file_digest", "reusable"]
