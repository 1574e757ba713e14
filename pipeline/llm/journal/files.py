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
import os
import re
import threading
import time
from pathlib import Path

SEGMENT_GLOB = "part-*.jsonl"
NEW_SEGMENT = re.compile(r"^part-[1-9]\d*-\d+-")  # written by a ledger-keeping journal (part-0-0-*: adopted)
SYNC_S = 0.5  # the most seconds a written journal line waits for its fsync

_UNSYNCED: dict[Path, float] = {}  # journal file -> when its oldest line not yet fsynced was written
_SYNC_LOCK = threading.Lock()


def read_lines(path: Path) -> tuple[list[dict], int]:
    """The JSON objects of a journal file and the count of torn lines skipped ([] when it is missing)."""
    entries, skipped = [], 0
    try:
        with path.open("rb") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    skipped += 1  # a torn line from a killed writer
                    continue
                if isinstance(entry, dict):
                    entries.append(entry)
    except FileNotFoundError:
        pass
    return entries, skipped


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
