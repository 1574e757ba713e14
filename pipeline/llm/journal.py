"""A durable, append-only JSONL journal of the service's answers and of every paid request: a rerun never pays twice,
and the journal is the spend ledger.

Three kinds of line:

- an answer: ``{"key", "request_key", "repeat", "text", "data", "usage", "finish_reason", "model", "t"}``, where
  ``key`` is ``journal_key(...)``, the sha256 of everything that decides the answer; a later run re-uses it.
- ``{"sent": id, "model", "input_tokens_max", "max_tokens", "at_most_usd", "t"}``, written before a request goes
  out: if its reply never arrives (the process was killed mid-flight) the ledger counts it as "unknown, at most".
- ``{"paid": id, "input_tokens", "output_tokens", "cost_usd", "t"}`` once the reply arrived (cost at the prices in
  force; 0 with ``"error"`` when the request failed without a reply).

Every line is written (``os.write`` on an ``O_APPEND`` file) before the call returns, under a thread lock and an
advisory file lock, so concurrent writers never interleave lines and a killed process loses nothing it wrote (the
kernel holds it); a process killed mid-write leaves at most a torn last line, skipped on load. Lines are fsynced
in groups: by the first write ``SYNC_S`` seconds or more after the oldest unsynced one, before a flush to the store,
and at exit. An fsync per line cost ~5 ms on the event loop's thread (3 lines a request) and capped a run near 60
requests/s; only a crash of the machine itself, not of the process, can lose a line written and not yet synced. ``Journal(path)`` keeps everything in the file ``path``, unless ``path``'s folder was registered with a
:class:`Flusher` (``segmented``): then the journal reads every ``part-*.jsonl`` segment of that folder and writes
its own segments there (``part-<time>-<pid>-<name>.jsonl``, append-only, never rewritten), which the flusher copies
to the store every ``flush_s`` seconds, every ``flush_every`` answers, at exit and on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .usage import worst_case_tokens

SEGMENT_GLOB = "part-*.jsonl"
NEW_SEGMENT = re.compile(r"^part-[1-9]\d*-\d+-")


def journal_key(provider: str, model: str, params: dict | None, messages: list, schema: dict | None,
                repeat: int) -> str:
    """The sha256 of (provider, model, params, messages, schema, repeat) in canonical JSON."""
    doc = [provider, model, params or {}, messages, schema, repeat]
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


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
    """Append one JSON line to ``path`` (fsynced unless ``sync`` is False); a torn last line is closed first."""
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


SYNC_S = 0.5  # the most seconds a written journal line waits for its fsync
_UNSYNCED: dict[Path, float] = {}  # journal file -> when its oldest line not yet fsynced was written
_SYNC_LOCK = threading.Lock()


def _fsync(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # syncs every write to the file, whichever descriptor made it
        finally:
            os.close(fd)


def sync_journals(older_than: float = 0.0) -> None:
    """fsync every journal file holding lines written more than ``older_than`` seconds ago (0: all of them)."""
    now = time.monotonic()
    with _SYNC_LOCK:
        due = [p for p, t in _UNSYNCED.items() if now - t >= older_than]
        for p in due:
            del _UNSYNCED[p]
    for p in due:
        _fsync(p)


atexit.register(sync_journals)


_FLUSHERS: dict = {}  # folder -> journal_flush.Flusher, for journals whose folder is segmented
_STOP: dict = {"signum": None, "inflight": 0}  # the signal being handled; requests sent and not yet answered


class Journal:
    """Answers by key, loaded from ``path`` (or its folder's segments) and appended to as they arrive."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.flusher = _FLUSHERS.get(self.path.parent.resolve())
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
        """The file to append to: ``path``, or this journal's current segment (a new one after each flush)."""
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
        with _SYNC_LOCK:
            _UNSYNCED.setdefault(target, time.monotonic())
        sync_journals(SYNC_S)

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
        self._append({"sent": sid, "model": model, "input_tokens_max": int(input_tokens_max),
                      "max_tokens": int(max_tokens), "at_most_usd": round(at_most_usd, 10), "t": time.time()})
        return sid

    def paid(self, sid: str | None, input_tokens: int, output_tokens: int, cost_usd: float,
             error: str | None = None) -> None:
        """Record what request ``sid`` cost once its reply arrived (0 with ``error`` when it failed)."""
        entry = {"paid": sid, "input_tokens": int(input_tokens), "output_tokens": int(output_tokens),
                 "cost_usd": round(cost_usd, 10), "t": time.time()}
        if error is not None:
            entry["error"] = error[:200]
        self._append(entry)


# --------------------------------------------------------------------------- the ledger


@dataclass
class Ledger:
    """Spend read from journal files: replies that arrived (``cost_usd``), and requests sent whose reply never
    did (``pending``, costing ``unknown_at_most_usd`` at worst)."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    pending: int = 0
    unknown_at_most_usd: float = 0.0
    answers: int = 0
    sent: dict = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict:
        return {"requests": self.requests, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cost_usd": round(self.cost_usd, 8), "pending": self.pending,
                "unknown_at_most_usd": round(self.unknown_at_most_usd, 8), "answers": self.answers}


def read_ledger(files: Iterable[Path]) -> Ledger:
    """Sum the spend recorded in ``files``. A file with no ``sent``/``paid`` lines (written before the journal
    kept them) counts its answers' own usage instead."""
    ledger, settled = Ledger(), set()
    for path in files:
        entries, _ = read_lines(Path(path))
        # a segment of a ledger-keeping journal (not one adopted from the single-file layout: part-0-0-*) has its
        # cost in sent/paid lines, even one that holds only answers (it was started after a flush)
        keeps_sends = bool(NEW_SEGMENT.match(Path(path).name)) or any("sent" in e or "paid" in e for e in entries)
        for e in entries:
            if "paid" in e:
                settled.add(e["paid"])
                ledger.requests += 0 if e.get("error") else 1
                ledger.input_tokens += int(e.get("input_tokens") or 0)
                ledger.output_tokens += int(e.get("output_tokens") or 0)
                ledger.cost_usd += float(e.get("cost_usd") or 0.0)
            elif "sent" in e:
                ledger.sent[e["sent"]] = float(e.get("at_most_usd") or 0.0)
            elif "key" in e:
                ledger.answers += 1
                if not keeps_sends:
                    usage = e.get("usage") or {}
                    ledger.requests += int(usage.get("requests") or 0)
                    ledger.input_tokens += int(usage.get("input_tokens") or 0)
                    ledger.output_tokens += int(usage.get("output_tokens") or 0)
                    ledger.cost_usd += float(usage.get("cost_usd") or 0.0)
    unsettled = [v for k, v in ledger.sent.items() if k not in settled]
    ledger.pending, ledger.unknown_at_most_usd = len(unsettled), sum(unsettled)
    return ledger


# --------------------------------------------------------------------------- recording every send


class Send:
    """One request on its way, recorded in a ledger journal: ``answered(completion)`` writes what it cost."""

    def __init__(self, journal: Journal, sid: str, meter):
        self.journal, self.sid, self.meter = journal, sid, meter

    def answered(self, completion) -> None:
        m = self.meter
        self.journal.paid(self.sid, completion.input_tokens, completion.output_tokens,
                          (completion.input_tokens * m.price_input_per_1m
                           + completion.output_tokens * m.price_output_per_1m) / 1e6)


@contextlib.asynccontextmanager
async def recorded_send(journal: Journal | None, model: str | None, messages: list, schema: dict | None,
                        params: dict, meter):
    """Around one send to the service: a ``sent`` line (with its worst-case cost) first, the ``paid`` line
    through the yielded :class:`Send` when the reply arrives, a ``paid`` line of 0 with the error when the service
    answered with one; a send cancelled or timed out stays unknown (it may have been charged). Yields None for a
    journal that keeps answers only (a single file: no ledger); nothing new goes out while a signal is handled."""
    if journal is None or journal.flusher is None:
        yield None
        return
    tokens_in, limit = worst_case_tokens(messages, schema, params)
    if _STOP["signum"] is not None:
        await asyncio.Event().wait()  # stopping on a signal: nothing new goes out while the replies land
    at_most = (tokens_in * meter.price_input_per_1m + limit * meter.price_output_per_1m) / 1e6
    sid = journal.sent(model, tokens_in, limit, at_most)
    _STOP["inflight"] += 1
    try:
        yield Send(journal, sid, meter)
    except asyncio.TimeoutError:
        raise  # no reply within the timeout: unknown, as a cancel is
    except Exception as err:  # an error reply: nothing to pay
        journal.paid(sid, 0, 0, 0.0, error=f"{type(err).__name__}: {err}")
        raise
    finally:
        _STOP["inflight"] -= 1


def record_batch(journal: Journal | None, answers: dict, discount: float, meter) -> None:
    """A batch's answers as paid in a ledger journal (at the batch discount)."""
    if journal is None or journal.flusher is None:
        return
    for c in answers.values():
        journal.paid(None, c.input_tokens, c.output_tokens, discount * (
            c.input_tokens * meter.price_input_per_1m + c.output_tokens * meter.price_output_per_1m) / 1e6)
