"""Flushing a segmented journal folder to the store: every ``flush_s`` seconds, every
``flush_every`` answers, at exit and on SIGTERM/SIGINT (what GitHub sends on cancel and timeout).

A folder registered here (``segmented``) is segmented: every
:class:`~pipeline.llm.journal.answers.Journal` opened in it writes its own append-only segments
there, which the folder's :class:`Flusher` copies to the store.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .files import SEGMENT_GLOB, sync_journals

STOP_GRACE_S = 5.0  # GitHub's cancel sends SIGINT, then SIGTERM 7.5 s later, then SIGKILL 2.5 s after that

_FLUSHERS: dict[Path, Flusher] = {}  # segmented folder (resolved) -> its flusher
_STOP: dict = {"signum": None, "inflight": 0}  # the signal being handled; requests sent and not yet answered
_PREVIOUS: dict[int, object] = {}  # signal -> the handler it had before ours


class Flusher:
    """Copies a segmented journal folder's new or grown segments to the store through ``push``.

    ``push({path: bytes})`` is called every ``flush_s`` seconds (from a background thread), after
    every ``flush_every`` answers, at exit and on SIGTERM/SIGINT; None (the local store) means the
    folder already is the store: nothing to copy.
    """

    def __init__(self, folder: Path, push: Callable[[dict], None] | None, flush_s: float = 30.0,
                 flush_every: int = 50):
        self.folder = Path(folder)
        self.push = push
        self.flush_s = flush_s
        self.flush_every = max(1, int(flush_every))
        # a journal starts a new segment when this changes: pushed segments stay as pushed
        self.generation = 0
        self.pushes = 0
        self._pushed: dict[str, int] = {}
        self._since = 0
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def seen(self, paths: Iterable[Path]) -> None:
        """Mark segments as already in the store (pulled from it)."""
        for p in paths:
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
            try:
                if not self.flush() and not self._since:
                    break  # idle: the next answer starts the thread again
            except Exception as err:  # noqa: BLE001 - a failed push is retried at the next tick
                print(f"warning: journal flush to the store failed (retried later): {err}", file=sys.stderr)
        with self._lock:
            self._thread = None

    def close(self) -> int:
        """Flush a last time and stop the background thread; the number of segments pushed."""
        self._closed = True
        self._wake.set()
        return self.flush()

    def flush(self) -> int:
        """Push every segment that is new or grew since its last push; the number pushed."""
        if self.push is None:
            return 0
        sync_journals()  # what goes to the store is on this disk too
        with self._lock:
            self._since = 0
            changed = {}
            for path in sorted(self.folder.glob(SEGMENT_GLOB)):
                if path.stat().st_size == self._pushed.get(path.name):
                    continue  # pushed already: read only what is new, not the whole journal at every flush
                data = path.read_bytes()
                if len(data) != self._pushed.get(path.name):
                    changed[path] = data
            if not changed:
                return 0
            self.generation += 1  # from now on journals write to fresh segments
            self.push(changed)
            for path, data in changed.items():
                self._pushed[path.name] = len(data)
            self.pushes += 1
            return len(changed)


def segmented(folder: Path, flusher: Flusher) -> None:
    """Journals opened in ``folder`` from now on write segments there, flushed by ``flusher``."""
    folder.mkdir(parents=True, exist_ok=True)
    _FLUSHERS[folder.resolve()] = flusher
    _install_handlers()


def flusher_of(folder: Path) -> Flusher | None:
    """The flusher of a segmented ``folder``; None for any other folder (its journals keep a single file)."""
    return _FLUSHERS.get(Path(folder).resolve())


def release(folder: Path) -> int:
    """Flush ``folder``'s journal a last time and stop flushing it (its stage is done); segments pushed."""
    flusher = _FLUSHERS.pop(Path(folder).resolve(), None)
    return flusher.close() if flusher is not None else 0


def flush_all() -> int:
    """Flush every registered folder; the number of segments pushed (errors are reported, not raised)."""
    pushed = 0
    for flusher in list(_FLUSHERS.values()):
        try:
            pushed += flusher.flush()
        except Exception as err:  # noqa: BLE001 - exiting: say so, keep flushing the others
            print(f"warning: journal flush to the store failed: {err}", file=sys.stderr)
    return pushed


# --------------------------------------------------------------------------- stopping on a signal


def stopping() -> bool:
    """A SIGTERM/SIGINT is being handled: nothing new may be sent."""
    return _STOP["signum"] is not None


@contextlib.contextmanager
def in_flight() -> Iterator[None]:
    """Around a request sent and not yet answered: a signal lets it land in the journal before flushing."""
    _STOP["inflight"] += 1
    try:
        yield
    finally:
        _STOP["inflight"] -= 1


def _on_signal(signum, frame) -> None:
    """Flush, then do what the signal did before; with replies on their way, first let them land in
    the journal (at most ``STOP_GRACE_S``; nothing new is sent meanwhile), so a rerun re-pays none
    of them."""
    if _STOP["inflight"] > 0 and _STOP["signum"] is None:
        _STOP["signum"] = signum
        threading.Thread(target=_drain, args=(signum,), name="journal-drain", daemon=True).start()
        return
    _STOP["signum"] = signum
    flush_all()
    previous = _PREVIOUS.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)  # SIGINT's default raises KeyboardInterrupt
    elif previous != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # die of the same signal, as without the handler


def _drain(signum: int) -> None:
    deadline = time.monotonic() + STOP_GRACE_S
    while _STOP["inflight"] > 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)  # the engine journals a reply as soon as it is checked: no await in between
    flush_all()
    os.kill(os.getpid(), signum)  # back to the main thread's handler: flushed, so it goes on as before


def _install_handlers() -> None:
    """Flush at exit and on SIGTERM/SIGINT (GitHub's cancel and timeout),
    then do what the signal did before."""
    if _PREVIOUS:
        return
    atexit.register(flush_all)
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            previous = signal.signal(signum, _on_signal)
        except ValueError:  # not the main thread: exit and the action's flush step still flush
            continue
        _PREVIOUS[signum] = previous
    _PREVIOUS.setdefault(0, None)
