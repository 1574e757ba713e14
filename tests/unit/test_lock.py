"""The task lock (issue 10, item 5): one writer per task, a one-line refusal for the second, stale locks taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.store import LocalStore
from pipeline.store.lock import LockHeld, iso, now, task_lock
from tests.round_artifacts import make_config

ROOT = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
from pipeline.store import LocalStore
from pipeline.store.lock import task_lock
with task_lock(LocalStore(sys.argv[1]), "demo", "synthesize"):
    print("held", flush=True)
    time.sleep(60)
"""


def lock_file(root: Path) -> Path:
    return root / ".locks" / "demo.json"


def write_lock(root: Path, **fields) -> Path:
    record = {"task": "demo", "owner": "duo synthesize (pid 1 on elsewhere)", "pid": 1, "host": "elsewhere",
              "token": "t0", "since": iso(now()), "expires": iso(now() + timedelta(minutes=10)), **fields}
    path = lock_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def holder(tmp_path):
    """Another process holding task demo's lock in the local store at tmp_path/store."""
    root = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "held"
    yield root, proc
    proc.kill()
    proc.wait()


def test_lock_file_is_made_and_removed(tmp_path):
    store = LocalStore(tmp_path)
    with task_lock(store, "demo", "prepare"):
        record = json.loads(lock_file(tmp_path).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert record["verb"] == "prepare" and record["since"] <= record["expires"]
    assert not lock_file(tmp_path).exists()


def test_lock_is_reentrant_within_a_process(tmp_path):
    store = LocalStore(tmp_path)
    with task_lock(store, "demo", "run"):
        with task_lock(LocalStore(tmp_path), "demo", "synthesize"):  # duo run calls stages in-process
            assert lock_file(tmp_path).exists()
        assert lock_file(tmp_path).exists()  # still held by the outer block
    assert not lock_file(tmp_path).exists()


def test_threads_of_one_process_share_the_lock(tmp_path):
    errors = []

    def work():
        try:
            with task_lock(LocalStore(tmp_path), "demo", "decide"):
                pass
        except LockHeld as exc:
            errors.append(exc)
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and not lock_file(tmp_path).exists()


def test_live_holder_on_this_host_is_respected(holder):
    root, proc = holder
    with pytest.raises(LockHeld) as err, task_lock(LocalStore(root), "demo", "synthesize"):
        pass
    msg = str(err.value)
    assert msg.startswith("task demo is being worked on by duo synthesize (pid ") and f"pid {proc.pid} " in msg
    assert str(lock_file(root)) in msg and msg.endswith("wait for it or remove the lock if that process is gone")


def test_second_process_on_the_same_task_fails_with_one_line(holder, tmp_path):
    """Regression (issue 10): two simultaneous synthesize runs of one task both paid."""
    root, proc = holder
    cfg = make_config(tmp_path / "task", ["store.path=" + str(root)])
    out = subprocess.run([sys.executable, "-m", "pipeline", "synthesize", str(cfg.source_path), "--set",
                          f"store.path={root}"], capture_output=True, text=True, timeout=120,
                         check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = out.stderr.strip().splitlines()
    print(f"second process: exit {out.returncode}: {lines}")
    assert out.returncode == 1 and len(lines) == 1
    assert lines[0].startswith(f"error: task demo is being worked on by duo synthesize (pid {proc.pid} on ")
    assert "(lock " in lines[0] and "expires " in lines[0] and "remove the lock if that process is gone" in lines[0]


def test_cli_refuses_while_the_lock_is_held_and_runs_once_it_is_free(holder, tmp_path, capsys):
    root, proc = holder
    cfg = make_config(tmp_path / "task")
    sets = ["--set", f"store.path={root}"]
    assert main(["prepare", str(cfg.source_path), *sets]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "is being worked on by" in line
    assert main(["validate", str(cfg.source_path), *sets]) in (0, 1)  # validate takes no lock
    assert "is being worked on" not in capsys.readouterr().err
    proc.kill()
    proc.wait()  # killed without releasing: its pid is dead on this host, so the lock is stale
    assert lock_file(root).exists()
    main(["prepare", str(cfg.source_path), *sets])  # the data file is missing: it fails, but for that reason
    assert "is being worked on" not in capsys.readouterr().err
    assert not lock_file(root).exists()


def test_stale_lock_of_a_dead_pid_is_taken_over(tmp_path):
    write_lock(tmp_path, pid=dead_pid(), host=socket.gethostname())
    with task_lock(LocalStore(tmp_path), "demo", "finetune"):
        assert json.loads(lock_file(tmp_path).read_text())["pid"] == os.getpid()
    assert not lock_file(tmp_path).exists()


def test_expired_lock_of_another_host_is_taken_over(tmp_path):
    write_lock(tmp_path, since=iso(now() - timedelta(hours=2)), expires=iso(now() - timedelta(minutes=1)))
    with task_lock(LocalStore(tmp_path), "demo", "infer"):
        assert json.loads(lock_file(tmp_path).read_text())["host"] == socket.gethostname()


def test_live_lock_of_another_host_is_respected_until_it_expires(tmp_path):
    write_lock(tmp_path)  # pid 1 on "elsewhere": its pid cannot be checked from here
    with pytest.raises(LockHeld, match="by duo synthesize \\(pid 1 on elsewhere\\)"), \
            task_lock(LocalStore(tmp_path), "demo", "synthesize"):
        pass


def test_garbled_lock_file_is_judged_by_its_age(tmp_path):
    path = write_lock(tmp_path)
    path.write_text("{not json")
    os.utime(path, (0, 0))  # old: a writer killed half-way, long ago
    with task_lock(LocalStore(tmp_path), "demo", "evaluate"):
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_refresh_moves_the_expiry_forward(tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.store.lock.LocalLock.ttl_s", 0.6)
    with task_lock(LocalStore(tmp_path), "demo", "finetune"):
        first = json.loads(lock_file(tmp_path).read_text())["expires"]
        threading.Event().wait(1.3)
        assert json.loads(lock_file(tmp_path).read_text())["expires"] > first


# -- the hub store's lock object -------------------------------------------------------------------------------------

@pytest.fixture
def hub_store(tmp_path, fake_hub):
    from tests.fakes.hub_fixtures import FAKE_USER

    cfg = make_config(tmp_path / "task", ["store.kind=hub", f"store.namespace={FAKE_USER}"])
    from pipeline.store import open_store

    def make():
        store = open_store(cfg)
        store.retry_delays = (0, 0)
        return store
    return make


def test_hub_lock_object_is_committed_and_removed(hub_store, fake_hub):
    store = hub_store()
    with task_lock(store, "demo", "synthesize"):
        record = json.loads(fake_hub.files(store.dataset_repo, "dataset")["locks/demo.json"])
        assert record["owner"].startswith("duo synthesize (pid ") and record["expires"] > record["since"]
    assert "locks/demo.json" not in fake_hub.files(store.dataset_repo, "dataset")


def test_hub_lock_held_by_another_runner_is_one_line_with_owner_and_expiry(hub_store, fake_hub, monkeypatch):
    store = hub_store()
    monkeypatch.setenv("GITHUB_RUN_ID", "4711")
    monkeypatch.setenv("GITHUB_JOB", "synthesize")
    from pipeline.store.lock import HubLock

    other = HubLock(store.hub, store.dataset_repo, "demo")
    other.acquire("synthesize")  # another runner's lock: taken outside this process's registry
    with pytest.raises(LockHeld) as err, task_lock(hub_store(), "demo", "synthesize"):
        pass
    msg = str(err.value)
    print(f"hub lock refusal: {msg}")
    assert "\n" not in msg and "by duo synthesize in GitHub run 4711 job synthesize" in msg
    assert "expires 20" in msg and "/datasets/" in msg and "locks/demo.json" in msg
    other.release()
    with task_lock(hub_store(), "demo", "synthesize"):
        pass


def test_hub_lock_expired_is_taken_over(hub_store, fake_hub):
    store = hub_store()
    store.hub.ensure_repo(store.dataset_repo, "dataset")
    stale = {"task": "demo", "owner": "duo finetune (pid 9 on gone)", "pid": 9, "host": "gone", "token": "x",
             "since": iso(now() - timedelta(hours=3)), "expires": iso(now() - timedelta(minutes=5))}
    store.hub.commit(store.dataset_repo, "dataset", {"locks/demo.json": json.dumps(stale).encode()}, [], "stale")
    with task_lock(store, "demo", "finetune"):
        assert json.loads(fake_hub.files(store.dataset_repo, "dataset")["locks/demo.json"])["token"] != "x"


def test_hub_lock_two_runners_racing_only_one_wins(hub_store, fake_hub):
    """Both read 'no lock' and commit on the same parent: the Hub takes one commit and refuses the other (412)."""
    from pipeline.store.lock import HubLock

    a, b = (HubLock(hub_store().hub, hub_store().dataset_repo, "demo") for _ in range(2))
    a.hub.ensure_repo(a.repo_id, "dataset")
    head, current = a.hub.read_head_file(a.repo_id, "dataset", a.path)
    assert current is None
    assert a.hub.commit(a.repo_id, "dataset", {a.path: b"{\"a\": 1}"}, [], "a", parent=head) is not None
    assert b.hub.commit(b.repo_id, "dataset", {b.path: b"{\"b\": 1}"}, [], "b", parent=head) is None
