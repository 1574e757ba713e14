"""A small synthesize task run as a real ``duo`` process against the fake OpenAI (issue 19's signal,
crash and rerun tests): the config, the prepared store, a responder giving every request new pairs,
and reading the journal back."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from pipeline.cli import main
from pipeline.llm.journal import read_lines

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "alpaca_eval_sample.jsonl"
PRICE_IN, PRICE_OUT = 5.0, 15.0


def make_task(tmp_path: Path, samples: int = 40, concurrency: int = 4, **service) -> Path:
    """A task config (local store under ``tmp_path``) asking ``samples`` requests of one pair each,
    prepared; its path."""
    doc = {
        "task": {"name": "demo", "description": "helpful answers to general-assistant questions"},
        "data": {"source": str(SAMPLE), "test": {"size": 0.25, "seed": 3},
                 "columns": {"instruction": "instruction", "response": "output",
                             "category": "dataset"}},
        "student": {"model": "m"},
        "store": {"kind": "local", "path": str(tmp_path / "store")},
        "privacy": {"scrub": False},
        "service": {"synthesize": {"provider": "openai", "model": "gpt-4o", "rpm": None,
                                   "concurrency": concurrency, "price_input_per_1m": PRICE_IN,
                                   "price_output_per_1m": PRICE_OUT, "max_retries": 2,
                                   "schema_retries": 1, "timeout_s": 10, **service}},
        "synthesize": {"samples": samples, "pairs_per_request": 1, "max_attempts": 1, "seed": 1,
                       "length_filter": {"enabled": False}, "decontaminate": {"semantic": False}},
    }
    path = tmp_path / "duo.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["prepare", str(path)]) == 0
    return path


class NewPairs:
    """A responder: one new pair a request (never a duplicate), its words counted as tokens."""

    def __init__(self):
        self._n = itertools.count()
        self._lock = threading.Lock()

    def __call__(self, body: dict):
        with self._lock:
            n = next(self._n)
        item = f"z{n:05d}q"
        return {"contents": [{"instruction": f"Describe item {item} in plain words for a novice.",
                              "response": f"Item {item} is described here at a length that passes "
                                          "the minimum, with enough words to read as an answer."}]}


def duo(config: Path, verb: str = "synthesize", env: dict | None = None,
        **popen) -> subprocess.Popen:
    """``duo <verb> CONFIG`` as a real process (the repo on its path)."""
    env = dict(env or os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "pipeline", verb, str(config)], env=env,
                            cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)


def journal_folder(config: Path, stage: str = "synthesize", round_no: int = 1) -> Path:
    return config.parent / "store" / "journal" / stage / f"round-{round_no}"


def journal_lines(folder: Path) -> tuple[list[dict], int]:
    """Every line of the folder's segments, and how many did not parse."""
    entries, skipped = [], 0
    for p in sorted(folder.glob("part-*.jsonl")):
        got, bad = read_lines(p)
        entries += got
        skipped += bad
    return entries, skipped


def wait_for_answers(folder: Path, proc: subprocess.Popen, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if sum(1 for e in journal_lines(folder)[0] if "key" in e) >= count:
            return
        time.sleep(0.02)
    err = proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
    raise AssertionError(f"fewer than {count} answers journaled before the deadline: {err[-1500:]}")


def github_output(path: Path) -> dict:
    """The ``name=value`` lines a step wrote to ``$GITHUB_OUTPUT``."""
    out = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True)
