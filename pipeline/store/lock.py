"""One writer per task: a lock in the store that a stage holds while it runs.

- ``local`` store: ``<store>/.locks/<task>.json``, created with ``O_EXCL`` and holding the owner
  (pid, host, user, the GitHub run when there is one), when it was taken and when it expires. It is
  stale, and taken over, when its pid is dead on this host or its expiry has passed.
- ``hub`` store: ``locks/<task>.json`` in the dataset repo, written by a commit whose parent is the
  head the writer read (the Hub refuses it when another commit came in between, so two runners
  cannot both take it). It is stale once its expiry has passed; a runner killed without releasing it
  blocks the task until then.

While held, a daemon thread moves the expiry forward every third of its lifetime, so a long
fine-tune keeps its lock and a dead holder's lock lapses soon. Within one process the lock is
re-entrant (``duo run`` chains stages in-process, and a test may call the CLI from several threads).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..errors import DuoError

# a local holder's expiry (refreshed while it runs); a dead pid on this host frees it at once
LOCAL_TTL_S = 600.0
# a hub holder's expiry: each refresh is a commit, so less often than locally
HUB_TTL_S = 1200.0
# hub: how many times to re-read and retry when another commit lands between read and write
COMMIT_TRIES = 5

_registry_lock = threading.Lock()
_held: dict[str, list] = {}  # lock location -> [count, backend, stop event]


class LockHeld(DuoError):
    """Another live process holds the task's lock."""


def now() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def owner_record(task: str, verb: str, ttl_s: float) -> dict:
    """Who takes the lock: this process, and on GitHub Actions the run and job."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    host = socket.gethostname()
    owner = f"duo {verb} (pid {os.getpid()} on {host}, user {user})"
    if os.environ.get("GITHUB_RUN_ID"):
        owner = (f"duo {verb} in GitHub run {os.environ['GITHUB_RUN_ID']} "
                 f"job {os.environ.get('GITHUB_JOB', '?')} (pid {os.getpid()} on {host})")
    t = now()
    return {
        "task": task,
        "owner": owner,
        "verb": verb,
        "pid": os.getpid(),
        "host": host,
        "token": uuid.uuid4().hex,
        "since": iso(t),
        "expires": iso(t + timedelta(seconds=ttl_s)),
    }


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    except (OSError, ValueError, OverflowError):
        return False
    return True


def is_stale(record: dict, here: str | None = None) -> bool:
    """True when the holder is gone: its pid is dead on this host, or its expiry has passed."""
    expires = parse_time(record.get("expires", ""))
    if expires is None or expires <= now():
        return True
    if record.get("host") == (here or socket.gethostname()):
        try:
            return not pid_alive(int(record.get("pid")))
        except (TypeError, ValueError):
            return True
    return False


def held_message(task: str, record: dict, where: str) -> str:
    return (f"task {task} is being worked on by {record.get('owner', 'an unknown process')} "
            f"since {record.get('since', '?')} "
            f"(lock {where}, expires {record.get('expires', '?')}); "
            "wait for it or remove the lock if that process is gone")


class LocalLock:
    """The lock file of a local store."""

    ttl_s = LOCAL_TTL_S

    def __init__(self, root: Path, task: str):
        self.task = task
        self.path = Path(root) / ".locks" / f"{task}.json"
        self.where = str(self.path)
        self.record: dict | None = None

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # half-written or garbled: judged by its age below

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Serialise the check-and-take-over of a stale lock between processes on this machine."""
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
        record = owner_record(self.task, verb, self.ttl_s)
        with self._guard():
            for _ in range(3):
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    current = self._read()
                    if current is None:
                        continue  # released meanwhile
                    if current == {} and time.time() - self._mtime() < 5:
                        time.sleep(0.2)  # being written right now
                        continue
                    if current and not is_stale(current):
                        raise LockHeld(held_message(self.task, current, self.where)) from None
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

    def refresh(self) -> None:
        current = self._read()
        if not self.record or not current or current.get("token") != self.record["token"]:
            return  # taken over (or removed by hand): not ours to extend
        self.record["expires"] = iso(now() + timedelta(seconds=self.ttl_s))
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}")
        tmp.write_text(json.dumps(self.record), encoding="utf-8")
        os.replace(tmp, self.path)

    def release(self) -> None:
        current = self._read()
        if self.record and current and current.get("token") == self.record["token"]:
            self.path.unlink(missing_ok=True)
        self.record = None


class HubLock:
    """The lock object of a hub store: ``locks/<task>.json`` in the dataset repo."""

    ttl_s = HUB_TTL_S

    def __init__(self, hub, repo_id: str, task: str):
        self.hub = hub
        self.repo_id = repo_id
        self.task = task
        self.path = f"locks/{task}.json"
        self.where = f"{hub.url(repo_id, 'dataset')}/blob/main/{self.path}"
        self.record: dict | None = None

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
        record = owner_record(self.task, verb, self.ttl_s)

        def free(current: dict | None) -> bool:
            if current and not current.get("token") == record["token"] and not is_stale(current):
                raise LockHeld(held_message(self.task, current, self.where))
            return True

        self._write(record, f"duo: lock task {self.task} ({verb})", free)
        self.record = record

    def _ours(self, current: dict | None) -> bool:
        return bool(self.record and current and current.get("token") == self.record["token"])

    def refresh(self) -> None:
        if self.record:
            record = {**self.record, "expires": iso(now() + timedelta(seconds=self.ttl_s))}
            if self._write(record, f"duo: keep the lock of task {self.task}", self._ours):
                self.record = record

    def release(self) -> None:
        if self.record:
            self._write(None, f"duo: unlock task {self.task}", self._ours)
        self.record = None


def backend_for(store, task: str):
    """The lock of ``task`` in ``store``: a Hub lock object for the hub store, else a lock file."""
    if getattr(store, "kind", "") == "hub":
        return HubLock(store.hub, store.dataset_repo, task)
    return LocalLock(store.root, task)


def _keep_fresh(backend, stop: threading.Event) -> None:
    while not stop.wait(backend.ttl_s / 3):
        with suppress(Exception):  # a failed refresh must not kill the stage; the next one may succeed
            backend.refresh()


@contextmanager
def task_lock(store, task: str, verb: str) -> Iterator[None]:
    """Hold ``task``'s lock in ``store`` for the block;
    LockHeld (one line) when another live process has it."""
    backend = backend_for(store, task)
    key = backend.where
    with _registry_lock:  # held while acquiring, so two threads of one process never race each other for it
        entry = _held.get(key)
        if entry is None:
            backend.acquire(verb)
            stop = threading.Event()
            threading.Thread(target=_keep_fresh, args=(backend, stop), daemon=True,
                             name=f"duo-lock-{task}").start()
            entry = _held[key] = [0, backend, stop]
        entry[0] += 1
    try:
        yield
    finally:
        with _registry_lock:
            entry[0] -= 1
            if entry[0] == 0:
                del _held[key]
                entry[2].set()
                entry[1].release()
