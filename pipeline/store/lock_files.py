"""Where a task lock lives: a file in a local store, an object in a hub store's dataset repo.

- ``local`` store: ``<store>/.locks/<task>.json``, created with ``O_EXCL``. Taking over a stale lock,
  renewing and removing one happen under an ``flock`` on ``.locks/.<task>.guard``, so two processes
  on one machine never both take it and a renewal never writes over a lock another process took.
- ``hub`` store: ``locks/<task>.json`` in the dataset repo, written by a commit whose parent is the
  head the writer read (the Hub refuses it when another commit came in between, so two runners
  cannot both take it). Every renewal and the release are such commits too.

Both give ``acquire(verb)`` (LockHeld, with the holder's record, when a live process has it),
``refresh()`` (renew; False once the lock is no longer ours), ``release()``, ``read()`` and
``remove(seen)`` (for ``duo unlock``: delete the lock ``seen``, unless another took its place).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import DuoError
from .lock_record import LockHeld, held_message, is_stale, owner_record, renewed

# A holder renews its lock every HEARTBEAT seconds (at most a third of the expiry) and each renewal
# sets the expiry TTL seconds ahead, so a lock whose holder died lapses within TTL on any machine.
LOCAL_TTL_S = 120.0
LOCAL_HEARTBEAT_S = 30.0
# hub: each renewal is a commit, and the Hub allows a repo 128 commits an hour; 60 of them go to the
# journal's flushes, so the lock takes at most 60 (and keeps 2 missed renewals of slack)
HUB_TTL_S = 180.0
HUB_HEARTBEAT_S = 60.0
# these variables, when set, replace the TTL and the heartbeat of both stores (tests shorten them)
TTL_ENV = "DUO_LOCK_TTL_S"
HEARTBEAT_ENV = "DUO_LOCK_HEARTBEAT_S"
# hub: how many times to re-read and retry when another commit lands between read and write
COMMIT_TRIES = 5


def setting(name: str, default: float) -> float:
    """Seconds from environment variable ``name``, else ``default``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise DuoError(f"{name}={raw!r}: expected a number of seconds above 0")
    return value


class _Timing:
    """The expiry and heartbeat of a lock kind, read when used (the variables may change)."""

    ttl_default = LOCAL_TTL_S
    heartbeat_default = LOCAL_HEARTBEAT_S

    @property
    def ttl_s(self) -> float:
        return setting(TTL_ENV, self.ttl_default)

    @property
    def heartbeat_s(self) -> float:
        return min(setting(HEARTBEAT_ENV, self.heartbeat_default), self.ttl_s / 3)


class LocalLock(_Timing):
    """The lock file of a local store."""

    kind = "local"

    def __init__(self, root: Path, task: str):
        self.task = task
        self.path = Path(root) / ".locks" / f"{task}.json"
        self.where = str(self.path)
        self.record: dict | None = None
        self._io = threading.RLock()  # the heartbeat thread and a release never interleave

    def read(self) -> dict | None:
        """The lock's record; None when there is none, {} when it is garbled."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # half-written or garbled: judged by its age

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Serialise changes to the lock file between processes on this machine."""
        try:
            import fcntl
        except ImportError:  # not POSIX: the O_EXCL create alone decides
            yield
            return
        with open(self.path.parent / f".{self.task}.guard", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def acquire(self, verb: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = owner_record(self.task, verb, self.ttl_s, self.heartbeat_s)
        with self._guard():
            for _ in range(3):
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    current = self.read()
                    if current is None:
                        continue  # released meanwhile
                    if current == {} and time.time() - self._mtime() < 5:
                        time.sleep(0.2)  # being written right now
                        continue
                    if current and not is_stale(current):
                        raise LockHeld(held_message(self.task, current, self.where), current) from None
                    self.path.unlink(missing_ok=True)  # stale: the holder is gone
                    continue
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(record, fh)
                self.record = record
                return
        raise DuoError(f"could not take the lock {self.where} for task {self.task}: "
                       "it keeps changing; try again")

    def _mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    def _ours(self, current: dict | None) -> bool:
        return bool(self.record and current and current.get("token") == self.record["token"])

    def refresh(self) -> bool:
        with self._io, self._guard():
            if not self._ours(self.read()):
                return False  # taken over, or removed by duo unlock: not ours to extend
            record = renewed(self.record, self.ttl_s)
            tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}")
            tmp.write_text(json.dumps(record), encoding="utf-8")
            os.replace(tmp, self.path)
            self.record = record
            return True

    def release(self) -> None:
        with self._io:
            if self._ours(self.read()):
                self.path.unlink(missing_ok=True)
            self.record = None

    def remove(self, seen: dict) -> bool:
        """Delete the lock ``seen``; False when another lock has taken its place."""
        with self._guard():
            current = self.read()
            if current is None:
                return True
            if current.get("token") != seen.get("token"):
                return False
            self.path.unlink(missing_ok=True)
            return True


class HubLock(_Timing):
    """The lock object of a hub store: ``locks/<task>.json`` in the dataset repo."""

    kind = "hub"
    ttl_default = HUB_TTL_S
    heartbeat_default = HUB_HEARTBEAT_S

    def __init__(self, hub, repo_id: str, task: str):
        self.hub = hub
        self.repo_id = repo_id
        self.task = task
        self.path = f"locks/{task}.json"
        self.where = f"{hub.url(repo_id, 'dataset')}/blob/main/{self.path}"
        self.record: dict | None = None
        self._io = threading.RLock()

    def read(self) -> dict | None:
        return self.hub.read_head_file(self.repo_id, "dataset", self.path)[1]

    def _write(self, record: dict | None, message: str, check=None) -> bool:
        """Commit ``record`` (None: delete the lock) on the head just read, after
        ``check(current)``; retried on a concurrent commit. False when ``check`` says not to
        write."""
        for _ in range(COMMIT_TRIES):
            head, current = self.hub.read_head_file(self.repo_id, "dataset", self.path)
            if check is not None and not check(current):
                return False
            if record is None and current is None:
                return True
            uploads = {} if record is None else {self.path: json.dumps(record, indent=1).encode() + b"\n"}
            deletes = [self.path] if record is None else []
            if self.hub.commit(self.repo_id, "dataset", uploads, deletes, message, parent=head) is not None:
                return True
        raise DuoError(f"could not write the lock {self.where}: the dataset repo kept changing; try again")

    def acquire(self, verb: str) -> None:
        self.hub.ensure_repo(self.repo_id, "dataset")
        record = owner_record(self.task, verb, self.ttl_s, self.heartbeat_s)

        def free(current: dict | None) -> bool:
            if current and not current.get("token") == record["token"] and not is_stale(current):
                raise LockHeld(held_message(self.task, current, self.where), current)
            return True

        self._write(record, f"duo: lock task {self.task} ({verb})", free)
        self.record = record

    def _ours(self, current: dict | None) -> bool:
        return bool(self.record and current and current.get("token") == self.record["token"])

    def refresh(self) -> bool:
        with self._io:
            if not self.record:
                return False
            record = renewed(self.record, self.ttl_s)
            if not self._write(record, f"duo: keep the lock of task {self.task}", self._ours):
                return False
            self.record = record
            return True

    def release(self) -> None:
        with self._io:
            if self.record:
                self._write(None, f"duo: unlock task {self.task}", self._ours)
            self.record = None

    def remove(self, seen: dict) -> bool:
        """Delete the lock ``seen`` in one commit; False when another lock has taken its place."""
        def same(current: dict | None) -> bool:
            return current is None or current.get("token") == seen.get("token")

        return self._write(None, f"duo: unlock task {self.task} (duo unlock)", same)


def backend_for(store, task: str) -> LocalLock | HubLock:
    """The lock of ``task`` in ``store``: a Hub lock object for the hub store, else a lock file."""
    if getattr(store, "kind", "") == "hub":
        return HubLock(store.hub, store.dataset_repo, task)
    return LocalLock(store.root, task)
