"""Issue 10, items 1 and 2: the journal lives in the store and is the spend ledger.

A child process runs the engine against the fake OpenAI server (with latency) through ``open_journal``, and
is killed (SIGKILL) or stopped (SIGTERM) after some answers; a second child reruns the same requests, on the same
folder or on a *fresh* one with the hub store (the fake Hub). Each test prints its measured figures: answers paid,
in flight at the kill, repeats after the rerun, the ledger against the fake's reported usage.
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
import yaml

from pipeline.config import build_config
from pipeline.llm.journal import read_lines
from pipeline.llm.journal.sync import store_ledger
from pipeline.report.costs import cost_summary
from pipeline.stats.budget import spent_in_store
from pipeline.store import open_store

ROOT = Path(__file__).resolve().parents[2]
N, PRICE_IN, PRICE_OUT = 60, 5.0, 15.0
FILLER = " word" * 20  # 22 words a question: the fake counts a token a word, and echoes the question back
UNIT_USD = (22 * PRICE_IN + 22 * PRICE_OUT) / 1e6  # what one answer costs at the fake

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
if store.kind == "hub":
    store.retry_delays = (0.0, 0.0, 0.0)
reqs = [Request(key=f"k{{i}}", messages=[{{"role": "user", "content": f"question {{i}}{filler}"}}])
        for i in range({n})]
svc = service_cfg(rpm=None, concurrency=4, price_input_per_1m={pin}, price_output_per_1m={pout})
Engine(svc, journal=open_journal(store, cfg, "synthesize", 1), progress=False).run(reqs)
"""


def make_doc(root: Path, kind: str, **journal) -> dict:
    store = {"kind": kind, "path": str(root)} | ({"namespace": "duo-org"} if kind == "hub" else {})
    return {"task": {"name": "demo", "description": "a demo task"}, "data": {"source": "data.jsonl"},
            "student": {"model": "m"}, "store": store, "journal": {"flush_s": 30, "flush_every": 50, **journal}}


def child(doc: dict, env: dict) -> subprocess.Popen:
    script = CHILD.format(root=str(ROOT), doc=json.dumps(doc), filler=FILLER, n=N, pin=PRICE_IN, pout=PRICE_OUT)
    return subprocess.Popen([sys.executable, "-c", script], env=env, cwd=str(ROOT))


def answers_in(folder: Path) -> int:
    return sum(1 for p in folder.glob("part-*.jsonl") for e in read_lines(p)[0] if "key" in e)


def interrupt(proc: subprocess.Popen, folder: Path, signum: int, after: int = 15) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and answers_in(folder) < after and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signum)
    proc.wait(timeout=30)
    time.sleep(0.5)  # let the fake finish answering what the stopped process had already sent


def unflushed_segments(tmp_path: Path, on_hub: dict) -> list[str]:
    """The local segments the Hub lacks or holds shorter."""
    root = tmp_path / "a"
    return [p for p in (q.relative_to(root).as_posix() for q in (root / "journal").rglob("part-*.jsonl"))
            if on_hub.get(p, -1) < (root / p).stat().st_size]


def in_flight(ledger) -> int:
    """Requests sent whose answer is not in the journal: no reply yet, or a reply not yet journaled."""
    return ledger.requests + ledger.pending - ledger.answers


def asked(fake) -> Counter:
    return Counter(e["body"]["messages"][0]["content"].split()[1] for e in fake.log
                   if isinstance(e.get("body"), dict) and "messages" in e["body"])


def fake_usd(fake) -> float:
    return (fake.reported["prompt_tokens"] * PRICE_IN + fake.reported["completion_tokens"] * PRICE_OUT) / 1e6


def show(capsys, title: str, rows: dict) -> None:
    with capsys.disabled():
        print(f"\n{title}\n" + "\n".join(f"  {k:<40} {v}" for k, v in rows.items()))


@pytest.fixture
def env(fake_openai, tmp_path):
    fake_openai.set_faults(latency_s=0.15)
    return dict(os.environ, HF_HUB_DISABLE_XET="1", PYTHONPATH=str(ROOT))


def test_kill_9_local_ledger_matches_the_fakes_usage_and_rerun_repays_only_in_flight(env, fake_openai, tmp_path,
                                                                                      capsys):
    doc = make_doc(tmp_path / "store", "local")
    folder = tmp_path / "store" / "journal" / "synthesize" / "round-1"
    proc = child(doc, env)
    interrupt(proc, folder, signal.SIGKILL)
    cfg = build_config(doc, base_dir=tmp_path)
    ledger = store_ledger(open_store(cfg))["round-1/synthesize"]
    paid, fake_cost = fake_openai.reported["requests"], fake_usd(fake_openai)
    first = asked(fake_openai)

    # the ledger has every reply that arrived; the rest of the fake's usage is the requests in flight at the kill
    eps = 1e-9 * fake_cost
    assert ledger.cost_usd - eps <= fake_cost <= ledger.cost_usd + ledger.unknown_at_most_usd + eps
    in_flight_usd = fake_cost - ledger.cost_usd
    answered_late = round(in_flight_usd / UNIT_USD)
    assert 0 <= answered_late <= ledger.pending <= 4  # concurrency 4
    assert abs(in_flight_usd - answered_late * UNIT_USD) <= 0.01 * fake_cost
    assert ledger.requests == paid - answered_late
    # the cap starts from what may have been spent: the replies that never came at their worst case
    assert spent_in_store(open_store(cfg)) == pytest.approx(ledger.cost_usd + ledger.unknown_at_most_usd)
    cost = cost_summary(cfg, open_store(cfg), 1)
    assert cost["pending"] == ledger.pending and cost["unknown_at_most_usd"] >= in_flight_usd
    # issue 19: the report's cost is the ledger's paid plus unknown-at-most
    booked = ledger.cost_usd + ledger.unknown_at_most_usd
    assert cost["round_artifacts"][0]["cost_usd"] == pytest.approx(booked)

    fake_openai.set_faults()
    fake_openai.log.clear()
    rerun = child(doc, env)
    assert rerun.wait(timeout=60) == 0
    repeats = sum(1 for q in asked(fake_openai) if q in first)
    assert repeats <= in_flight(ledger)
    after = store_ledger(open_store(cfg))["round-1/synthesize"]
    assert after.cost_usd == pytest.approx(fake_usd(fake_openai) - in_flight_usd)  # fake.reported: all runs
    show(capsys, "kill -9 mid-run, local store, rerun on the same folder", {
        "answers paid before the kill (fake)": paid,
        "answers journaled before the kill": ledger.answers,
        "in flight at the kill (sent, not journaled)": f"{in_flight(ledger)} ({ledger.pending} without a reply)",
        "repeats after rerun": repeats,
        "ledger known $ / fake usage $": f"{ledger.cost_usd:.6f} / {fake_cost:.6f}",
        "fake $ - ledger $ (in flight, answered)": f"{in_flight_usd:.6f} ({answered_late} x {UNIT_USD:.6f})",
        "unknown, at most $": f"{ledger.unknown_at_most_usd:.6f}",
        "ledger after rerun $ / fake total $": f"{after.cost_usd:.6f} / {fake_usd(fake_openai):.6f}",
    })


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_hub_store_rerun_on_a_fresh_folder(fake_openai, fake_hub, env, tmp_path, capsys, signum):
    # kill -9 loses what was journaled since the last flush: flush after every answer to show the bound
    doc = make_doc(tmp_path / "a", "hub", flush_every=1, flush_s=0.5, commits_per_hour=10**6)
    folder = tmp_path / "a" / "journal" / "synthesize" / "round-1"
    proc = child(doc, env)
    interrupt(proc, folder, signum)
    assert proc.returncode == -signum
    paid, fake_cost = fake_openai.reported["requests"], fake_usd(fake_openai)
    first = asked(fake_openai)
    local = store_ledger(open_store(build_config(make_doc(tmp_path / "a", "local"), base_dir=tmp_path)))
    local = local["round-1/synthesize"]
    on_hub = {p: s for p, s in open_store(build_config(doc, base_dir=tmp_path)).hub.sizes_under(
        "duo-org/demo-duo-data", "dataset", "main", "journal").items()}
    assert on_hub and all(p.startswith("journal/synthesize/round-1/part-") for p in on_hub)
    look = open_store(build_config(make_doc(tmp_path / "c", "hub"), base_dir=tmp_path))  # what the Hub holds
    stored = sum(1 for p in look.pull_journal("journal/") for e in read_lines(p)[0] if "key" in e)
    unflushed = local.answers - stored  # journaled here, not yet on the Hub when the kill came
    # the composite action's `if: always()` step, on the same machine after the stage's process died
    config = tmp_path / "a.yaml"
    config.write_text(yaml.safe_dump(doc))
    step = subprocess.run([sys.executable, "-m", "pipeline.llm.journal.sync", "flush"], check=False, cwd=str(ROOT),
                          env=dict(env, DUO_CONFIG=str(config)), capture_output=True, text=True, timeout=60)
    assert step.returncode == 0, step.stderr
    assert step.stdout.startswith(f"journal: {len(unflushed_segments(tmp_path, on_hub))} segment(s) copied")

    fake_openai.set_faults()
    fake_openai.log.clear()
    fresh = make_doc(tmp_path / "b", "hub")  # another machine: empty folder, empty HF cache
    rerun = child(fresh, dict(env, HF_HUB_CACHE=str(tmp_path / "b-cache")))
    assert rerun.wait(timeout=60) == 0
    repeats = sum(1 for q in asked(fake_openai) if q in first)
    ledger = store_ledger(open_store(build_config(fresh, base_dir=tmp_path)))["round-1/synthesize"]
    answered = ledger.answers
    if signum == signal.SIGTERM:
        # the replies in flight landed, then the signal handler flushed everything (before the flush step ran)
        assert local.pending == 0 and unflushed == 0 and repeats == 0
        assert local.cost_usd == pytest.approx(fake_cost, rel=0.01)
    else:
        assert repeats <= in_flight(local)  # only the requests in flight at the kill: the flush step sent the rest
    assert answered == N
    total = fake_usd(fake_openai)  # fake.reported counts both runs
    eps = 1e-9 * total
    assert ledger.cost_usd - eps <= total <= ledger.cost_usd + ledger.unknown_at_most_usd + eps
    show(capsys, f"{'SIGTERM' if signum == signal.SIGTERM else 'kill -9'} mid-run, hub store, rerun on a fresh "
                 "folder", {
        "answers paid before the stop (fake)": paid,
        "answers journaled before the stop": local.answers,
        "in flight at the stop (sent, not journaled)": f"{in_flight(local)} ({local.pending} without a reply)",
        "segments on the Hub at the stop": len(on_hub),
        "answers journaled, not yet on the Hub": f"{unflushed} (then sent by the flush step)",
        "repeats after rerun (fresh folder)": repeats,
        "ledger $ (before stop) / fake $": f"{local.cost_usd:.6f} / {fake_cost:.6f}",
        "ledger $ after rerun / fake total $": f"{ledger.cost_usd:.6f} / {total:.6f}",
        "unknown, at most $": f"{ledger.unknown_at_most_usd:.6f}",
    })
