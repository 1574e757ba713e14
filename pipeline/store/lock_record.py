"""What a task lock says, and what it means: who holds it, since when, when its holder last
renewed it and when it expires; whether that holder is gone; the lines that tell a user so.

A record is a JSON object: ``task``, ``owner`` (a phrase naming the process, and on GitHub Actions
the run and job), ``verb``, ``pid``, ``host``, ``token`` (unique to one taking of the lock),
``since``, ``renewed`` and ``expires`` (UTC, ISO 8601, to the second), ``beat`` (how many times it
was renewed) and ``heartbeat_s`` (how often its holder renews it). Records written before the
heartbeat lack the last three.
"""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta

from ..errors import DuoError


class LockHeld(DuoError):
    """Another live process holds the task's lock; ``record`` is that lock's record."""

    def __init__(self, message: str, record: dict | None = None):
        super().__init__(message)
        self.record = record or {}


def now() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def owner_record(task: str, verb: str, ttl_s: float, heartbeat_s: float) -> dict:
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
        "renewed": iso(t),
        "expires": iso(t + timedelta(seconds=ttl_s)),
        "beat": 0,
        "heartbeat_s": heartbeat_s,
    }


def renewed(record: dict, ttl_s: float) -> dict:
    """``record`` renewed now: its expiry moved ``ttl_s`` ahead."""
    t = now()
    return {**record, "renewed": iso(t), "expires": iso(t + timedelta(seconds=ttl_s)),
            "beat": int(record.get("beat") or 0) + 1}


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


def _here(record: dict, here: str | None) -> bool:
    return record.get("host") == (here or socket.gethostname())


def is_stale(record: dict, here: str | None = None) -> bool:
    """True when the holder is gone: its pid is dead on this host, or its expiry has passed."""
    expires = parse_time(record.get("expires", ""))
    if expires is None or expires <= now():
        return True
    if _here(record, here):
        try:
            return not pid_alive(int(record.get("pid")))
        except (TypeError, ValueError):
            return True
    return False


def surely_live(record: dict) -> bool:
    """The holder is a running process on this host: no point waiting for its lock to lapse."""
    try:
        return _here(record, None) and pid_alive(int(record.get("pid")))
    except (TypeError, ValueError):
        return False


def changed(seen: dict, current: dict) -> bool:
    """``current`` is not the lock ``seen`` as it was: renewed since, or taken by someone else."""
    return any(seen.get(k) != current.get(k) for k in ("token", "beat", "expires"))


def seconds_left(record: dict) -> float | None:
    """Seconds until the lock expires (negative once it has); None when it names no expiry."""
    expires = parse_time(record.get("expires", ""))
    return None if expires is None else (expires - now()).total_seconds()


def age_s(record: dict, field: str = "since") -> float | None:
    """Seconds since ``field`` (``since``: taken; ``renewed``: last renewed, or taken when it
    never was); None when unknown."""
    t = parse_time(record.get(field) or record.get("since", ""))
    return None if t is None else (now() - t).total_seconds()


def span(seconds: float | None) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 10 min``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def held_message(task: str, record: dict, where: str) -> str:
    return (f"task {task} is being worked on by {record.get('owner', 'an unknown process')} "
            f"since {record.get('since', '?')} "
            f"(lock {where}, expires {record.get('expires', '?')}); "
            "wait for it or remove the lock if that process is gone")


def waiting_line(task: str, record: dict, wait_s: float) -> str:
    """The one progress line of a process that waits for a lock whose holder may be gone."""
    return (f"waiting for the lock of task {task}: held by {record.get('owner', 'an unknown process')} "
            f"since {record.get('since', '?')}, last renewed {span(age_s(record, 'renewed'))} ago, "
            f"expires {record.get('expires', '?')}; taking it then unless it is renewed "
            f"(at most {span(wait_s)})")
