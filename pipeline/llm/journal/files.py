"""Journal files on disk: reading their lines, appending one, and fsyncing in groups.

Every line is written (``os.write`` on an ``O_APPEND`` file) before the call returns, under an
advisory file lock, so concurrent writers never interleave lines and a killed process loses nothing
it wrote (the kernel holds it); a process killed mid-write leaves at most a torn last line, skipped
on load. Lines are fsynced in groups: by the first write ``SYNC_S`` seconds or more after the oldest
unsynced one, before a flush to the store, and at exit. An fsync per line cost ~5 ms on the event
loop's thread (3 lines a request) and capped a run near 60 requests/s; only a crash of the machine
itself, not of the process, can lose a line written and not yet synced.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
from pathlib import Path

SEGMENT_GLOB = "part-*.jsonl"
NEW_SEGMENT = re.compile(r"^part-[1-9]\d*-\d+-")  # written by a ledger-keeping journal (part-0-0-*: adopted)
SYNC_S = 0.5  # the most seconds a written journal line waits for its fsync

# the most one journal line may say: tokens and dollars of one request (no real one comes near)
MAX_TOKENS, MAX_USD = 10**8, 10**4
_NUMBERS = {"input_tokens": MAX_TOKENS, "output_tokens": MAX_TOKENS, "input_tokens_max": MAX_TOKENS,
            "max_tokens": MAX_TOKENS, "requests": MAX_TOKENS, "cached": MAX_TOKENS,
            "cost_usd": MAX_USD, "at_most_usd": MAX_USD}

log = logging.getLogger(__name__)
_WARNED: set[tuple] = set()  # (file, bad lines) already warned about
_UNSYNCED: dict[Path, float] = {}  # journal file -> when its oldest line not yet fsynced was written
_SYNC_LOCK = threading.Lock()


def read_lines(path: Path) -> tuple[list[dict], int]:
    """The well-formed lines of a journal file, and how many were skipped ([] when it is missing).

    A line that is not JSON (a torn line from a killed writer), not an object, or whose numbers are
    not plausible (``check_line``) is skipped, with one warning naming the file and the line: a
    skipped ``paid`` line leaves its request unknown, at most its reservation. A folder where the
    segment should be gets one warning naming it.
    """
    entries, bad = [], []
    try:
        with path.open("rb") as f:
            for number, line in enumerate(f, 1):
                try:
                    entry = json.loads(line)
                    check_line(entry)
                except ValueError as err:
                    bad.append((number, str(err) if isinstance(err, BadLine) else "not JSON"))
                    continue
                entries.append(entry)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        _warn(path, (), f"journal segment {path} is a folder, not a file: skipped")
    if bad:
        lines = "; ".join(f"line {n}: {why}" for n, why in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        _warn(path, tuple(n for n, _ in bad),
              f"journal segment {path}: skipped {lines}{more}; a skipped paid line leaves its "
              "request unknown, at most its reservation")
    return entries, len(bad)


class BadLine(ValueError):
    """A journal line that parses but cannot be trusted."""


def check_line(entry) -> None:
    """Raise BadLine unless ``entry`` is a journal line whose ids are strings and whose token counts
    and dollars are finite numbers from 0 to a bound no real request reaches."""
    if not isinstance(entry, dict):
        raise BadLine("not a JSON object")
    for name in ("key", "sent", "paid"):
        value = entry.get(name, "")
        if not isinstance(value, str) and not (name == "paid" and value is None):  # a batch's: null
            raise BadLine(f"{name} {value!r} is not a string")
    usage = entry.get("usage")
    if usage is not None and not isinstance(usage, dict):
        raise BadLine(f"usage {usage!r} is not an object")
    for fields in (entry, usage or {}):
        for name, bound in _NUMBERS.items():
            value = fields.get(name)
            if value is None:
                continue
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not 0 <= value <= bound):  # NaN fails every comparison
                raise BadLine(f"{name} {value!r} is not a number from 0 to {bound:g}")


def _warn(path: Path, lines: tuple, message: str) -> None:
    """Log ``message`` once per file and set of bad lines, however often the file is read."""
    seen = (str(path), lines)
    with _SYNC_LOCK:
        if seen in _WARNED:
            return
        _WARNED.add(seen)
    log.warning(message)


def append_line(path: Path, entry: dict, *, sync: bool = True) -> None:
    """Append one JSON line to ``path`` (fsynced unless ``sync`` is False);
    a torn last line is closed first."""
    line = json.dumps(entry, ensure_ascii=False) + "\n"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = "\n" + line  # don't glue this entry onto a torn line
        os.write(fd, line.encode())
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the flock


def sync_later(path: Path) -> None:
    """A line was appended to ``path`` unsynced: fsync it with its group (see the module's docstring)."""
    with _SYNC_LOCK:
        _UNSYNCED.setdefault(path, time.monotonic())
    sync_journals(SYNC_S)


def _fsync(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # syncs every write to the file, whichever descriptor made it
        finally:
            os.close(fd)


def sync_journals(older_than: float = 0.0) -> None:
    """fsync every journal file holding lines written more than ``older_than`` seconds ago
    (0: all of them)."""
    now = time.monotonic()
    with _SYNC_LOCK:
        due = [p for p, t in _UNSYNCED.items() if now - t >= older_than]
        for p in due:
            del _UNSYNCED[p]
    for p in due:
        _fsync(p)


atexit.register(sync_journals)
