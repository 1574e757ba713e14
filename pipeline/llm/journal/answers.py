"""The journal's answers: keyed by everything that decides them, loaded at start and appended as they arrive.

``Journal(path)`` keeps everything in the file ``path``, unless ``path``'s folder is segmented
(registered with a :class:`~pipeline.llm.journal.flush.Flusher`): then the journal reads every
``part-*.jsonl`` segment of that folder and writes its own segments there
(``part-<time>-<pid>-<name>.jsonl``, append-only, never rewritten).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from pathlib import Path

from ..usage import sent_params
from .files import SEGMENT_GLOB, append_line, read_lines, sync_later
from .flush import flusher_of


def journal_key(provider: str, model: str, params: dict | None, messages: list, schema: dict | None,
                repeat: int) -> str:
    """The sha256 of (provider, model, params, messages, schema, repeat) in canonical JSON."""
    doc = [provider, model, params or {}, messages, schema, repeat]
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def keyed(service_cfg, request) -> tuple[dict, str]:
    """The params ``request`` is sent with (the service's, overridden by its own) and its journal key."""
    params = sent_params(service_cfg.params, request.params)
    key = journal_key(service_cfg.provider, service_cfg.model, params, request.messages, request.schema,
                      request.repeat)
    return params, key


class Journal:
    """Answers by key, loaded from ``path`` (or its folder's segments) and appended to as they arrive."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.flusher = flusher_of(self.path.parent)
        self._lock = threading.Lock()
        self._entries: dict[str, dict] = {}
        self._segment: Path | None = None if self.flusher is not None else self.path
        self._generation = -1
        self.skipped_lines = 0
        self._load()

    def _load(self) -> None:
        files = [self.path]
        if self.flusher is not None:
            files += sorted(self.path.parent.glob(SEGMENT_GLOB))
        for path in files:
            entries, skipped = read_lines(path)
            self.skipped_lines += skipped
            for entry in entries:
                if "key" in entry:
                    self._entries[entry["key"]] = entry

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> dict | None:
        return self._entries.get(key)

    def _target(self) -> Path:
        """The file to append to: ``path``, or this journal's current segment
        (a new one after each flush)."""
        if self.flusher is None:
            return self.path
        if self._segment is None or self._generation != self.flusher.generation:
            self._generation = self.flusher.generation
            self._segment = self.path.parent / f"part-{time.time_ns()}-{os.getpid()}-{self.path.stem}.jsonl"
        return self._segment

    def _append(self, entry: dict) -> None:
        with self._lock:
            target = self._target()
            append_line(target, entry, sync=False)
        sync_later(target)  # outside the lock: a due fsync doesn't hold up the other writers

    def put(self, key: str, **fields) -> dict:
        """Append one answer and make it durable before returning it."""
        entry = {"key": key, **fields, "t": time.time()}
        self._append(entry)
        self._entries[key] = entry
        if self.flusher is not None:
            self.flusher.noted()
        return entry

    def sent(self, model: str | None, input_tokens_max: int, max_tokens: int, at_most_usd: float) -> str:
        """Record a request about to go out; its id, for ``paid``."""
        sid = uuid.uuid4().hex[:16]
        self._append({
            "sent": sid,
            "model": model,
            "input_tokens_max": int(input_tokens_max),
            "max_tokens": int(max_tokens),
            "at_most_usd": round(at_most_usd, 10),
            "t": time.time(),
        })
        return sid

    def paid(self, sid: str | None, input_tokens: int, output_tokens: int, cost_usd: float,
             error: str | None = None) -> None:
        """Record what request ``sid`` cost once its reply arrived (0 with ``error`` when it failed)."""
        entry = {"paid": sid, "input_tokens": int(input_tokens), "output_tokens": int(output_tokens),
                 "cost_usd": round(cost_usd, 10), "t": time.time()}
        if error is not None:
            entry["error"] = error[:200]
        self._append(entry)
