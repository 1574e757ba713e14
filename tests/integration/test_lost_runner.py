"""Issue 19, item 5: a runner lost without its flush step re-pays at most the answers of the last
flush interval.

A child process asks the fake OpenAI through a hub-store journal at a real service's pace (2 s a
reply, 4 at a time: 2 answers a second) and is killed with SIGKILL 17 s in: no signal handler, no
flush step. A fresh runner (empty folder) reruns the same requests; what it asks again was paid
twice. With the old default (a flush every 30 s or 50 answers) nothing had reached the Hub yet;
with the hub default of 10 s, only the answers since the last flush (and those in flight) are
asked again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline.llm.journal import read_lines
from tests.synth_task import ROOT

N, CONCURRENCY, LATENCY_S, KILL_AT_S = 48, 4, 2.0, 17.0

CHILD = """
import json, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from pipeline.config import build_config
from pipeline.llm import Engine, Request
from pipeline.llm.journal.sync import open_journal
from pipeline.store import open_store
from tests.fakes.openai_fixtures import service_cfg
doc = json.loads({doc!r})
cfg = build_config(doc, base_dir=Path(doc["store"]["path"]))
store = open_store(cfg)
store.retry_delays = (0.0, 0.0, 0.0)
reqs = [Request(key=f"k{{i}}", messages=[{{"role": "user", "content": f"question {{i}}"}}])
        for i in range({n})]
svc = service_cfg(rpm=None, concurrency={concurrency}, price_input_per_1m=5.0,
                  price_output_per_1m=15.0)
Engine(svc, journal=open_journal(store, cfg, "synthesize", 1), progress=False).run(reqs)
"""


def make_doc(root: Path, journal: dict) -> dict:
    return {"task": {"name": "demo", "description": "a demo task"},
            "data": {"source": "data.jsonl"}, "student": {"model": "m"}, "journal": journal,
            "store": {"kind": "hub", "path": str(root), "namespace": "duo-org"}}


def child(doc: dict, env: dict) -> subprocess.Popen:
    script = CHILD.format(root=str(ROOT), doc=json.dumps(doc), n=N, concurrency=CONCURRENCY)
    return subprocess.Popen([sys.executable, "-c", script], env=env, cwd=str(ROOT))


def answer_times(folder: Path) -> list[float]:
    lines = (e for p in folder.glob("part-*.jsonl") for e in read_lines(p)[0])
    return sorted(e["t"] for e in lines if "key" in e)


def asked(fake) -> Counter:
    sent = fake.requests("POST", "chat/completions")
    return Counter(e["body"]["messages"][0]["content"] for e in sent)


@pytest.mark.parametrize("journal", [{"flush_s": 30}, {}],
                         ids=["old-default-30s", "hub-default-10s"])
def test_a_runner_lost_without_its_flush_step_repays_at_most_the_last_interval(
        fake_openai, fake_hub, tmp_path, capsys, journal):
    fake_openai.set_faults(latency_s=LATENCY_S)
    env = dict(os.environ, HF_HUB_DISABLE_XET="1", PYTHONPATH=str(ROOT))
    doc = make_doc(tmp_path / "a", journal)
    proc = child(doc, env)
    time.sleep(KILL_AT_S)
    os.kill(proc.pid, signal.SIGKILL)
    killed_at = time.time()
    proc.wait(timeout=30)
    first = asked(fake_openai)
    times = answer_times(tmp_path / "a" / "journal" / "synthesize" / "round-1")
    flush_s = journal.get("flush_s", 10)

    fake_openai.log.clear()
    fresh = make_doc(tmp_path / "b", journal)  # another machine: empty folder, empty HF cache
    rerun = child(fresh, dict(env, HF_HUB_CACHE=str(tmp_path / "b-cache")))
    assert rerun.wait(timeout=120) == 0
    repaid = sum(1 for q in asked(fake_openai) if q in first)
    # the bound: the answers of the last flush interval (and a second for the commit), plus
    # those in flight
    last_interval = sum(1 for t in times if t > killed_at - flush_s - 1.0)
    with capsys.disabled():
        print(f"\nkill -9 at {KILL_AT_S:.0f} s, no flush step, flush_s {flush_s}: {len(times)} "
              f"answers journaled, {len(first)} sent; fresh runner re-paid {repaid} (bound: "
              f"{last_interval} of the last interval + {CONCURRENCY} in flight)")
    assert len(times) >= 16  # the stage was well under way
    assert repaid <= last_interval + CONCURRENCY
    if flush_s == 10:
        assert repaid <= len(times) // 2  # the 10 s flush reached the Hub before the kill
