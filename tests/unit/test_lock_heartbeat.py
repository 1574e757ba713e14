"""Issue 19, item 1: the task lock's heartbeat, the wait for a lock that may lapse, and its release on
SIGTERM/SIGINT (also behind the journal flusher's own signal handler)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.errors import DuoError
from pipeline.store import LocalStore
from pipeline.store.lock import LOCAL_HEARTBEAT_S, LOCAL_TTL_S, LocalLock, LockHeld, iso, now, task_lock
from pipeline.store.lock_record import parse_time

ROOT = Path(__file__).resolve().parents[2]


def lock_file(root: Path) -> Path:
    return root / ".locks" / "demo.json"


def write_lock(root: Path, expires_in: float, **fields) -> dict:
    """A lock of pid 1 on host "elsewhere" (its pid cannot be checked from here)."""
    record = {"task": "demo", "owner": "duo synthesize (pid 1 on elsewhere)", "pid": 1, "host": "elsewhere",
              "token": "t0", "since": iso(now() - timedelta(minutes=5)), "renewed": iso(now()),
              "expires": iso(now() + timedelta(seconds=expires_in)), "beat": 3, **fields}
    lock_file(root).parent.mkdir(parents=True, exist_ok=True)
    lock_file(root).write_text(json.dumps(record))
    return record


def test_the_holder_renews_a_short_expiry(tmp_path, monkeypatch):
    assert (LOCAL_TTL_S, LOCAL_HEARTBEAT_S) == (120.0, 30.0)  # a dead holder's lock lapses within 2 minutes
    with task_lock(LocalStore(tmp_path), "demo", "finetune"):
        record = json.loads(lock_file(tmp_path).read_text())
        lifetime = parse_time(record["expires"]) - parse_time(record["renewed"])
        assert lifetime == timedelta(seconds=120) and record["heartbeat_s"] == 30 and record["beat"] == 0
    monkeypatch.setenv("DUO_LOCK_TTL_S", "1.5")  # the heartbeat follows: a third of the expiry at most
    with task_lock(LocalStore(tmp_path), "demo", "finetune"):
        time.sleep(1.3)
        record = json.loads(lock_file(tmp_path).read_text())
        assert record["heartbeat_s"] == 0.5 and record["beat"] >= 2


def test_a_bad_lock_setting_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("DUO_LOCK_HEARTBEAT_S", "soon")
    with pytest.raises(DuoError, match="^DUO_LOCK_HEARTBEAT_S='soon': expected a number of seconds above 0$"):
        _ = LocalLock(tmp_path, "demo").heartbeat_s


def test_a_lock_about_to_lapse_is_waited_for_with_one_line_then_taken(tmp_path):
    write_lock(tmp_path, expires_in=2)
    said = []
    t0 = time.monotonic()
    with task_lock(LocalStore(tmp_path), "demo", "synthesize", say=said.append):
        waited = time.monotonic() - t0
        assert json.loads(lock_file(tmp_path).read_text())["pid"] == os.getpid()
    print(f"waited {waited:.1f} s for a lock that expired in 2 s")
    assert 1 <= waited < 4
    [line] = said
    assert line.startswith("waiting for the lock of task demo: held by duo synthesize (pid 1 on elsewhere) since ")
    assert re.search(r", last renewed [01] s ago, expires 20\S+; taking it then unless it is renewed \(at most 1\d s\)$",
                     line), line


def test_a_lock_renewed_while_waiting_has_a_live_holder(tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.store.lock.POLL_S", 0.2)
    record = write_lock(tmp_path, expires_in=3)

    def renew():  # what the holder's heartbeat does
        time.sleep(0.5)
        lock_file(tmp_path).write_text(json.dumps({**record, "beat": 4, "expires": iso(now() + timedelta(seconds=3))}))
    threading.Thread(target=renew).start()
    said = []
    t0 = time.monotonic()
    with pytest.raises(LockHeld, match="^task demo is being worked on by duo synthesize \\(pid 1 on elsewhere\\)"), \
            task_lock(LocalStore(tmp_path), "demo", "synthesize", say=said.append):
        pass
    assert len(said) == 1 and 0.4 < time.monotonic() - t0 < 2
    assert json.loads(lock_file(tmp_path).read_text())["token"] == "t0"


def test_a_lock_that_would_outlive_our_own_expiry_fails_at_once(tmp_path):
    write_lock(tmp_path, expires_in=20 * 60)  # an older duo's 20-minute expiry, or a clock far ahead
    said = []
    t0 = time.monotonic()
    with pytest.raises(LockHeld), task_lock(LocalStore(tmp_path), "demo", "synthesize", say=said.append):
        pass
    assert said == [] and time.monotonic() - t0 < 1


# -- SIGTERM and SIGINT release the lock --------------------------------------------------------------------------

HOLD = """
import json, sys, time
from pathlib import Path
from pipeline.store import LocalStore
from pipeline.store.lock import task_lock
root, journal = Path(sys.argv[1]), sys.argv[2]
if sys.argv[3] == "ignore-sigint":
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
with task_lock(LocalStore(root), "demo", "synthesize"):
    if journal != "-":  # the journal's flusher, installed after the lock as in a stage: its handler runs first
        from pipeline.llm.journal.flush import Flusher, segmented
        folder = Path(journal)
        folder.mkdir()
        (folder / "part-1-1-a.jsonl").write_text("{}\\n")
        lock = root / ".locks" / "demo.json"
        push = lambda files: (root / "pushed").write_text(json.dumps({"lock_held": lock.exists()}))
        segmented(folder, Flusher(folder, push))
    print("held", flush=True)
    time.sleep(60)
"""


def hold(tmp_path: Path, journal: bool = False, sigint: str = "default") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), str(tmp_path / "j") if journal else "-",
                             sigint], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "held"
    assert lock_file(tmp_path).exists()
    return proc


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_signal_releases_the_lock(tmp_path, signum):
    proc = hold(tmp_path)
    proc.send_signal(signum)
    assert proc.wait(timeout=10) in (-signum, 1)  # SIGINT: KeyboardInterrupt, uncaught
    assert not lock_file(tmp_path).exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_behind_the_journal_flusher_the_journal_is_pushed_first_then_the_lock_released(tmp_path, signum):
    proc = hold(tmp_path, journal=True)
    proc.send_signal(signum)
    assert proc.wait(timeout=10) in (-signum, 1)
    assert json.loads((tmp_path / "pushed").read_text()) == {"lock_held": True}
    assert not lock_file(tmp_path).exists()


def test_an_ignored_sigint_leaves_the_process_and_its_lock_alone(tmp_path):
    proc = hold(tmp_path, sigint="ignore-sigint")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None and lock_file(tmp_path).exists()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == -signal.SIGTERM and not lock_file(tmp_path).exists()
