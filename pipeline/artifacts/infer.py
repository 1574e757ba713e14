"""``round-N/infer``: the student's answers to the test prompts (``answers.jsonl``), and their reader."""

from __future__ import annotations

import json
from pathlib import Path

from ..config import Config
from ..errors import DuoError
from ..records import iter_jsonl
from ..store import BASELINE_ROUND, Store, artifact_name
from .base import Artifact


def _parents(cfg: Config, store: Store, round_no: int) -> list[str]:
    """The test split and the round's adapter (none for round 0, the untuned baseline)."""
    needed = ["prepare"] + ([artifact_name("finetune", round_no)] if round_no > BASELINE_ROUND else [])
    for name in needed:
        if not store.exists(name):
            raise store.missing(name, f"infer (round {round_no})")
    return needed


ARTIFACT = Artifact(
    "infer",
    # the task's kind and schema: a json task's answers may be constrained to its schema (infer.constrain)
    reads=("student", "infer", "task.kind", "task.labels", "task.schema"),
    # How many threads, processes or GPUs answer changes the speed, not the answers.
    unhashed=("student.cpu_threads", "infer.launch", "infer.tensor_parallel_size"),
    files=lambda cfg: (cfg.resolve(cfg.task.schema),) if cfg.task.schema else (),
    parents=_parents,
)


def _found(row: dict, key: str) -> str:
    return "missing" if key not in row else f"{json.dumps(row[key])[:40]} ({type(row[key]).__name__})"


def read_answers(path: Path) -> list[dict]:
    """An ``answers.jsonl``, checked field by field; a bad row raises DuoError naming its line. Each row gets
    ``_key``: its id, or ``id#line`` for the second and later sampled answers to one prompt."""
    rows, seen = [], set()
    for lineno, row in iter_jsonl(path):
        for key in ("instruction", "reference"):
            if not isinstance(row.get(key), str):
                raise DuoError(f"{path}:{lineno}: field '{key}' is {_found(row, key)}; expected a string")
        if row.get("answer") is not None and not isinstance(row["answer"], str):
            raise DuoError(f"{path}:{lineno}: field 'answer' is {_found(row, 'answer')}; expected a string")
        if not isinstance(row.get("id"), (str, int)) or isinstance(row.get("id"), bool):
            raise DuoError(f"{path}:{lineno}: field 'id' is {_found(row, 'id')}; expected a string")
        key = str(row["id"])
        if key in seen:  # several sampled answers to one prompt: each is judged on its own
            key = f"{key}#{lineno}"
        seen.add(key)
        rows.append({**row, "answer": row.get("answer") or "", "_key": key})
    if not rows:
        raise DuoError(f"{path}: no answers to evaluate")
    return rows
