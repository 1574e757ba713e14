"""A durable, append-only JSONL journal of the service's successful answers, so a rerun never pays twice.

Each line is one answer: ``{"key", "request_key", "repeat", "text", "data", "usage", "finish_reason", "model",
"t"}``, where ``key`` is ``journal_key(...)``, the sha256 of everything that decides the answer. Every entry is
flushed and fsynced before ``put`` returns, under a thread lock and an advisory file lock, so concurrent writers
(threads or processes) never interleave lines. A process killed mid-write leaves at most a torn last line; it is
skipped on load and the next entry starts on a fresh line.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from pathlib import Path


def journal_key(provider: str, model: str, params: dict | None, messages: list, schema: dict | None,
                repeat: int) -> str:
    """The sha256 of (provider, model, params, messages, schema, repeat) in canonical JSON."""
    doc = [provider, model, params or {}, messages, schema, repeat]
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class Journal:
    """Answers by key, loaded from ``path`` (created when missing) and appended to as they arrive."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._entries: dict[str, dict] = {}
        self.skipped_lines = 0
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    self.skipped_lines += 1  # a torn line from a killed writer
                    continue
                if isinstance(entry, dict) and "key" in entry:
                    self._entries[entry["key"]] = entry

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> dict | None:
        return self._entries.get(key)

    def put(self, key: str, **fields) -> dict:
        """Append one answer and make it durable before returning it."""
        entry = {"key": key, **fields, "t": time.time()}
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = "\n" + line  # don't glue this entry onto a torn line
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)  # closing releases the flock
            self._entries[key] = entry
        return entry
