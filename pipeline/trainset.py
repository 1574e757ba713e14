"""The training set of a round: the coverage train split plus every synthetic set made up to that round."""

from __future__ import annotations

from .records import read_jsonl
from .store import Store, artifact_name


def training_artifacts(store: Store, round_no: int) -> list[str]:
    """Names of the artifacts round ``round_no`` trains on: ``prepare`` and each existing ``round-k/synthesize``,
    k <= ``round_no``. ArtifactMissing when ``prepare`` is not in the store."""
    if not store.exists("prepare"):
        raise store.missing("prepare", "the training set")
    names = ["prepare"]
    for k in range(1, int(round_no) + 1):
        name = artifact_name("synthesize", k)
        if store.exists(name):
            names.append(name)
    return names


def training_rows(store: Store, round_no: int) -> list[dict]:
    """Rows (``id``, ``instruction``, ``response``, ``category``, ``messages``, ...) of ``prepare/train.jsonl``
    followed by ``round-k/synthesize/data.jsonl`` for every existing k <= ``round_no``, in that order."""
    rows: list[dict] = []
    for name in training_artifacts(store, round_no):
        rows.extend(read_jsonl(store.open(name) / ("train.jsonl" if name == "prepare" else "data.jsonl")))
    return rows
