"""Flushing a segmented journal folder to the store: every ``flush_s`` seconds, every
``flush_every`` answers, at exit and on SIGTERM/SIGINT (what GitHub sends on cancel and timeout).

A folder registered here (``segmented``) is segmented: every
:class:`~pipeline.llm.journal.answers.Journal` opened in it writes its own append-only segments
there, which the folder's :class:`Flusher` copies to the store. Each copy is one commit on the Hub
(every segment that grew goes in it), so a runner lost without its flush step re-pays at most the
answers of the last flush interval. The Hub allows 128 commits an hour: the timed copies of a
process take at most ``commits_per_hour`` of them in any hour (``CommitBudget``).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ...shutdown import on_stop
from .files import SEGMENT_GLOB, sync_journals

log = logging.getLogger(__name__)
_FLUSHERS: dict[Path, Flusher] = {}  # segmented folder (resolved) -> its flusher
_BUDGETS: dict[float, CommitBudget] = {}  # commits an hour -> this process's budget (one per rate)


class CommitBudget:
    """At most ``per_hour`` commits in any hour: half of them may come at once, the rest are
    spread evenly (a token bucket holding ``per_hour / 2``, refilled at ``per_hour / 2`` an hour).
    Every push takes one; only the timed ones wait for it."""

    def __init__(self, per_hour: float):
        self.size = max(1.0, per_hour / 2)
        self.refill_s = 3600.0 / self.size
        self.tokens = self.size
        self.at = time.monotonic()
        self._lock = threading.Lock()

    def _refilled(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.size, self.tokens + (now - self.at) / self.refill_s)
        self.at = now

    def wait_s(self) -> float:
        """Seconds until a commit is within the budget (0: now)."""
        with self._lock:
            self._refilled()
            return max(0.0, (1.0 - self.tokens) * self.refill_s)

    def spend(self) -> None:
        with self._lock:
            self._refilled()
            self.tokens -= 1.0


class Flusher:
    """Copies a segmented journal folder's new or grown segments to the store through ``push``.

    ``push({path: bytes})`` is called every ``flush_s`` seconds (from a background thread, within
    ``commits_per_hour``), after every ``flush_every`` answers, at exit and on SIGTERM/SIGINT;
    None (the local store) means the folder already is the store: nothing to copy.
    """

    def __init__(self, folder: Path, push: Callable[[dict], None] | None, flush_s: float = 10.0,
                 flush_every: int = 50, commits_per_hour: float = 40.0):
        self.folder = Path(folder)
        self.push = push
        self.flush_s = flush_s
        self.flush_every = max(1, int(flush_every))
        # one budget for the process: ``duo run``'s stages share the Hub's hour
        self.budget = _BUDGETS.setdefault(float(commits_per_hour), CommitBudget(commits_per_hour))
        # a journal starts a new segment when this changes: pushed segments stay as pushed
        self.generation = 0
        self.pushes = 0
        self._pushed: dict[str, int] = {}
        self._since = 0
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def seen(self, paths: Iterable[Path]) -> None:
        """Mark segments as already in the store (pulled from it)."""
        for p in paths:
            if p.is_file():
                self._pushed[p.name] = p.stat().st_size

    def noted(self) -> None:
        """One more answer journaled: push after ``flush_every`` of them."""
        if self.push is None:
            return
        self._since += 1
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._loop, name=f"journal-flush-{self.folder.name}",
                                                daemon=True)
                self._thread.start()
        if self._since >= self.flush_every:
            self._wake.set()

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_s)
            self._wake.clear()
            self._closing.wait(self.budget.wait_s())  # the Hub's commits an hour
            if self._closed:
                break
            try:
                if not self.flush() and not self._since:
                    break  # idle: the next answer starts the thread again
            except Exception as err:  # noqa: BLE001 - a failed push is retried at the next tick
                log.warning("journal flush to the store failed (retried later): %s", err)
        with self._lock:
            self._thread = None

    def close(self) -> int:
        """Flush a last time and stop the background thread; the number of segments pushed."""
        self._closed = True
        self._closing.set()
        self._wake.set()
        return self.flush()

    def flush(self) -> int:
        """Push every segment that is new or grew since its last push, all in one push;
        the number pushed."""
        if self.push is None:
            return 0
        sync_journals()  # what goes to the store is on this disk too
        with self._lock:
            self._since = 0
            changed = {}
            for path in sorted(self.folder.glob(SEGMENT_GLOB)):
                if not path.is_file() or path.stat().st_size == self._pushed.get(path.name):
                    continue  # pushed already: read only what is new, not the whole journal at every flush
                data = path.read_bytes()
                if len(data) != self._pushed.get(path.name):
                    changed[path] = data
            if not changed:
                return 0
            self.generation += 1  # from now on journals write to fresh segments
            self.budget.spend()
            self.push(changed)
            for path, data in changed.items():
                self._pushed[path.name] = len(data)
            self.pushes += 1
            return len(changed)


def segmented(folder: Path, flusher: Flusher) -> None:
    """Journals opened in ``folder`` from now on write segments there, flushed by ``flusher``."""
    folder.mkdir(parents=True, exist_ok=True)
    _FLUSHERS[folder.resolve()] = flusher
    on_stop(flush_all)


def flusher_of(folder: Path) -> Flusher | None:
    """The flusher of a segmented ``folder``; None for any other folder (its journals keep a single file)."""
    return _FLUSHERS.get(Path(folder).resolve())


def release(folder: Path) -> int:
    """Flush ``folder``'s journal a last time and stop flushing it (its stage is done); segments pushed."""
    flusher = _FLUSHERS.pop(Path(folder).resolve(), None)
    return flusher.close() if flusher is not None else 0


def flush_all() -> int:
    """Flush every registered folder; the number of segments pushed (errors are logged)."""
    pushed = 0
    for flusher in list(_FLUSHERS.values()):
        try:
            pushed += flusher.flush()
        except Exception as err:  # noqa: BLE001 - exiting: say so, keep flushing the others
            log.warning("journal flush to the store failed: %s", err)
    return pushed


atexit.register(flush_all)
