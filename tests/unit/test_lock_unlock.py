"""Issue 19, item 1: ``duo unlock`` names the lock's owner and age, removes a stale lock, and refuses a
live one (renewed within its expiry) unless ``--force``; local store and hub store."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.store.lock import iso, now
from tests.round_artifacts import make_config

ROOT = Path(__file__).resolve().parents[2]
# another runner's duo holding the lock (the tests shorten its expiry and heartbeat)
HOLD = """
import socket, sys, time
socket.gethostname = lambda: "runner-1"
from pipeline.store import LocalStore
from pipeline.store.lock import task_lock
with task_lock(LocalStore(sys.argv[1]), "demo", "finetune"):
    print("held", flush=True)
    time.sleep(60)
"""


def record(**fields) -> dict:
    return {"task": "demo", "owner": "duo synthesize (pid 1 on elsewhere)", "pid": 1, "host": "elsewhere",
            "token": "t0", "since": iso(now() - timedelta(minutes=7, seconds=3)),
            "renewed": iso(now() - timedelta(seconds=20)), "expires": iso(now() + timedelta(seconds=100)),
            "beat": 14, **fields}


@pytest.fixture
def local(tmp_path):
    """(config path, store root) of a local store."""
    cfg = make_config(tmp_path / "task", ["store.path=" + str(tmp_path / "store")])
    return str(cfg.source_path), tmp_path / "store"


def put_lock(root: Path, rec: dict) -> Path:
    path = root / ".locks" / "demo.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))
    return path


def unlock(capsys, *args) -> tuple[int, str, list[str]]:
    code = main(["unlock", *args])
    out = capsys.readouterr()
    return code, out.out.strip(), out.err.strip().splitlines()


def test_no_lock_held(local, capsys):
    cfg, root = local
    code, out, err = unlock(capsys, cfg, "--set", f"store.path={root}")
    assert (code, err) == (0, []) and out == f"unlock demo: no lock held ({root / '.locks' / 'demo.json'})"


def test_a_live_lock_is_refused_with_its_owner_and_age(local, capsys):
    cfg, root = local
    path = put_lock(root, record())
    code, out, [line] = unlock(capsys, cfg, "--set", f"store.path={root}")
    print(line)
    assert code == 1 and out == "" and path.exists()
    assert re.match(r"error: task demo's lock is live: duo synthesize \(pid 1 on elsewhere\), "
                    r"taken 7 min [34] s ago, last renewed 2[01] s ago, expires 20", line)
    assert line.endswith("stop that job, or pass --force if you know it is gone")


def test_force_removes_a_live_lock(local, capsys):
    cfg, root = local
    path = put_lock(root, record())
    code, out, err = unlock(capsys, cfg, "--force", "--set", f"store.path={root}")
    assert (code, err) == (0, []) and not path.exists()
    assert out.startswith("unlock demo: removed the live lock (--force) of duo synthesize (pid 1 on elsewhere), "
                          "taken 7 min ")


@pytest.mark.parametrize("rec", [
    record(expires=iso(now() - timedelta(seconds=30))),  # expired
    record(host=socket.gethostname(), pid=2**22 + 7),  # on this host, its pid gone
    record(since="2026-01-01T00:00:00Z", renewed=None, beat=None,  # before the heartbeat, expired
           expires="2026-01-01T00:20:00Z"),
], ids=["expired", "dead-pid-here", "old-record"])
def test_a_stale_lock_is_removed_with_one_line(local, capsys, rec):
    cfg, root = local
    path = put_lock(root, rec)
    code, out, err = unlock(capsys, cfg, "--set", f"store.path={root}")
    assert (code, err) == (0, []) and not path.exists()
    assert out.startswith("unlock demo: removed the stale lock of duo synthesize (pid ") and " ago" in out


def test_unlock_with_a_real_holder_refused_then_removed_once_it_lapsed(local, capsys, monkeypatch):
    cfg, root = local
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DUO_LOCK_TTL_S": "1.5", "DUO_LOCK_HEARTBEAT_S": "0.3"}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    time.sleep(1)  # a few heartbeats
    code, _, [line] = unlock(capsys, cfg, "--set", f"store.path={root}")
    assert code == 1 and "lock is live: duo finetune (pid " in line and "on runner-1" in line
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(2)  # its lock lapses: nobody renews it any more
    code, out, _ = unlock(capsys, cfg, "--set", f"store.path={root}")
    assert code == 0 and out.startswith("unlock demo: removed the stale lock of duo finetune (pid ")


def test_a_forced_unlock_is_not_undone_by_the_holders_heartbeat(local, capsys):
    cfg, root = local
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DUO_LOCK_TTL_S": "1.5", "DUO_LOCK_HEARTBEAT_S": "0.3"}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "held"
        assert unlock(capsys, cfg, "--force", "--set", f"store.path={root}")[0] == 0
        time.sleep(1)
        assert not (root / ".locks" / "demo.json").exists()
    finally:
        proc.kill()
        proc.wait()


def test_unlock_help_and_verb_list(capsys):
    assert main(["unlock", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--force" in text and "DUO_FORCE" in text and "--round" not in text
    assert main(["--help"]) == 0
    assert "unlock" in capsys.readouterr().out


# -- the hub store ------------------------------------------------------------------------------------------------

@pytest.fixture
def hub(tmp_path, fake_hub):
    """(the config's arguments, the dataset repo) of a hub store on the fake Hub."""
    from tests.fakes.hub_fixtures import FAKE_USER

    cfg = make_config(tmp_path / "task", ["store.kind=hub", f"store.namespace={FAKE_USER}"])
    return [str(cfg.source_path), "--set", "store.kind=hub", "--set", f"store.namespace={FAKE_USER}"], \
        f"{FAKE_USER}/demo-duo-data"


def put_hub_lock(repo: str, rec: dict) -> None:
    from pipeline.store.hub_transport import HubTransport
    from tests.fakes.hub_fixtures import FAKE_TOKEN, FAKE_USER, HUB

    hub = HubTransport(HUB.url, FAKE_TOKEN, FAKE_USER, private=True)
    hub.ensure_repo(repo, "dataset")
    hub.commit(repo, "dataset", {"locks/demo.json": json.dumps(rec).encode()}, [], "another runner's lock")


def test_hub_unlock_refuses_a_live_lock_and_removes_a_stale_one_in_a_commit(hub, fake_hub, capsys):
    cfg, repo = hub
    code, out, _ = unlock(capsys, *cfg)
    assert code == 0 and out.startswith("unlock demo: no lock held (") and "/datasets/" in out
    put_hub_lock(repo, record(owner="duo synthesize in GitHub run 4711 job synthesize (pid 1 on elsewhere)"))
    code, _, [line] = unlock(capsys, *cfg)
    assert code == 1 and "lock is live: duo synthesize in GitHub run 4711 job synthesize" in line
    assert "locks/demo.json" in fake_hub.files(repo, "dataset")
    put_hub_lock(repo, record(expires=iso(now() - timedelta(seconds=5))))
    code, out, _ = unlock(capsys, *cfg)
    assert code == 0 and out.startswith("unlock demo: removed the stale lock of duo synthesize (pid 1 on elsewhere)")
    assert "locks/demo.json" not in fake_hub.files(repo, "dataset")
