"""Fixtures and helpers for tests that train or run the student: the tiny model, a hand-built prepare artifact,
and a config pointing at both."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from pipeline.config import build_config
from pipeline.manifest import Manifest
from pipeline.records import write_jsonl
from pipeline.store import LocalStore, artifact_name
from tests.tiny_model import build_tiny_model

# One torch thread for the test session (set before anything imports torch; an explicit setting wins). The tiny
# model gains nothing from a second thread, and when other processes share the cores, spinning OpenMP threads made
# these tests 4x slower (69 s vs 17 s) and SmolLM2 generation 10x slower (1.2 vs 12 tokens/s) on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny chat model (512-token BPE, 2-layer Llama), built once per test session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


def qa_rows(n: int, *, seed: int = 0, prefix: str = "t", category: str | None = "math") -> list[dict]:
    """``n`` prepare-style rows of a pattern a tiny model learns in a few steps: "What is a plus b?" -> "a + b"."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        instruction = f"What is {a} plus {b}?" + " Answer briefly." * (i % 3)  # lengths vary: batching is tested
        response = f"The answer is {a + b}."
        rows.append({"id": f"{prefix}{i}", "instruction": instruction, "response": response, "category": category,
                     "messages": [{"role": "user", "content": instruction},
                                  {"role": "assistant", "content": response}],
                     "source_line": i + 1})
    return rows


def make_prepare(store: LocalStore, train: list[dict], test: list[dict]) -> Manifest:
    """Write a ``prepare`` artifact by hand, as the prepare stage would."""
    with store.write("prepare") as folder:
        write_jsonl(folder / "train.jsonl", train)
        write_jsonl(folder / "test.jsonl", test)
        write_jsonl(folder / "bad_rows.jsonl", [])
        m = Manifest.start("prepare", "prepare", "hand-made")
        m.counts = {"train": len(train), "test": len(test), "bad_rows": 0}
        m.finish(folder).write(folder)
    return m


def make_synthetic(store: LocalStore, round_no: int, rows: list[dict]) -> Manifest:
    """Write a ``round-N/synthesize`` artifact by hand."""
    name = artifact_name("synthesize", round_no)
    rows = [{**r, "seed_id": "t0", "generator": "fake", "round": round_no} for r in rows]
    with store.write(name) as folder:
        write_jsonl(folder / "data.jsonl", rows)
        write_jsonl(folder / "removed.jsonl", [])
        write_jsonl(folder / "failures.jsonl", [])
        m = Manifest.start("synthesize", name, "hand-made", round_no)
        m.counts = {"kept": len(rows)}
        m.finish(folder).write(folder)
    return m


def tiny_config(base_dir: Path, model_dir: Path, **sections):
    """A Config whose student is the tiny model and whose local store is ``base_dir/store``; ``sections`` merge in."""
    doc = {
        "task": {"name": "tiny", "description": "adds small numbers"},
        "data": {"source": "unused.jsonl"},
        "student": {"model": str(model_dir)},
        "finetune": {"sft": {"max_steps": 12, "learning_rate": 3e-3, "per_device_train_batch_size": 4,
                             "warmup_steps": 0, "lr_scheduler_type": "constant", "max_length": 128}},
        "infer": {"batch_size": 4, "max_new_tokens": 8},
        "store": {"path": str(base_dir / "store")},
    }
    for key, value in sections.items():
        doc[key] = {**doc.get(key, {}), **value}
    return build_config(doc, base_dir=base_dir)
