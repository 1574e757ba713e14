"""One writer per task: a lock in the store that a stage holds while it runs.

The lock lives in the store (:mod:`.lock_files`: ``<store>/.locks/<task>.json`` locally,
``locks/<task>.json`` in the Hub dataset repo) and names its holder (:mod:`.lock_record`).

- **Heartbeat.** While held, a daemon thread renews the lock every ``heartbeat_s`` seconds (30 s
  locally, 60 s on the Hub, where each renewal is a commit), setting its expiry ``ttl_s`` ahead
  (2 and 3 minutes). A holder killed outright (kill -9, a lost runner) leaves a lock that lapses
  within ``ttl_s`` on any machine; on its own host a dead pid frees it at once.
- **Signals.** SIGTERM and SIGINT release the lock before the process ends: the first lock taken
  installs a handler that releases every held lock, then does what the signal did before (the
  journal flusher installs its own handler later, in front of this one, so the journal is flushed
  to the store before the lock is released).
- **Waiting.** A process that finds the lock held by another host's process, or by one it cannot
  see, prints one line (who holds it, since when, when it expires) and waits: once the lock
  expires it takes it; if the holder renews it meanwhile, the holder is alive and it fails with
  LockHeld ("... is being worked on by ..."). A live holder on this host, or a lock that will not
  expire within one of our own expiries, fails at once.
- ``duo unlock``: :func:`inspect` and :func:`remove`.

Within one process the lock is re-entrant (``duo run`` chains stages in-process, and a test may
call the CLI from several threads).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from .lock_files import (
    HEARTBEAT_ENV,
    HUB_HEARTBEAT_S,
    HUB_TTL_S,
    LOCAL_HEARTBEAT_S,
    LOCAL_TTL_S,
    TTL_ENV,
    HubLock,
    LocalLock,
    backend_for,
)
from .lock_record import (
    LockHeld,
    changed,
    held_message,
    is_stale,
    iso,
    now,
    seconds_left,
    surely_live,
    waiting_line,
)

__all__ = ["HEARTBEAT_ENV", "HUB_HEARTBEAT_S", "HUB_TTL_S", "LOCAL_HEARTBEAT_S", "LOCAL_TTL_S", "TTL_ENV",
           "HubLock", "LocalLock", "LockHeld", "backend_for", "held_message", "inspect", "is_stale", "iso",
           "now", "remove", "task_lock"]

# a waiting process gives a lock this long past its expiry (clocks of two machines differ a little)
WAIT_MARGIN_S = 15.0
# how often a waiting process looks at the lock again (at most; a third of the heartbeat when shorter)
POLL_S = 5.0
# on SIGTERM/SIGINT, how long the release may take before the process goes on dying without it
RELEASE_WAIT_S = 5.0

_registry_lock = threading.Lock()
_held: dict[str, list] = {}  # lock location -> [count, backend, stop event]
_before: dict[int, object] = {}  # signal -> the handler it had before ours


# --------------------------------------------------------------------------- taking and holding


def _wait_bound(backend, record: dict) -> float | None:
    """How long to wait for the lock ``record`` to lapse; None when not worth waiting."""
    left = seconds_left(record)
    if surely_live(record) or left is None or left > backend.ttl_s + WAIT_MARGIN_S:
        return None  # alive here, or an expiry further off than any heartbeat of ours would set
    return max(left, 0.0) + WAIT_MARGIN_S


def _take(backend, verb: str, say: Callable[[str], None] | None) -> None:
    """Take the lock, waiting (with one line through ``say``) for one whose holder may be gone."""
    seen: dict | None = None
    deadline = 0.0
    while True:
        try:
            backend.acquire(verb)
            return
        except LockHeld as held:
            if seen is None:
                bound = _wait_bound(backend, held.record)
                if bound is None:
                    raise
                seen, deadline = held.record, time.monotonic() + bound
                if say is not None:
                    say(waiting_line(backend.task, held.record, bound))
            elif changed(seen, held.record) or time.monotonic() > deadline:
                raise  # renewed while we waited: its holder is alive
        # look again after a poll, or just after the lock's expiry when that comes first
        to_expiry = max(0.2, (seconds_left(seen) or 0.0) + 0.1)
        time.sleep(min(POLL_S, backend.heartbeat_s / 3, to_expiry))


def _keep_fresh(backend, stop: threading.Event) -> None:
    ours = True
    while ours and not stop.wait(backend.heartbeat_s):
        # a failed renewal must not kill the stage; the next one may succeed
        with suppress(Exception):
            # False: taken over, or removed by duo unlock; nothing of ours left to renew
            ours = backend.refresh()


@contextmanager
def task_lock(store, task: str, verb: str, *, say: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold ``task``'s lock in ``store`` for the block; LockHeld (one line) when another live
    process has it. ``say`` gets the one progress line while waiting for a lock that may lapse."""
    backend = backend_for(store, task)
    key = backend.where
    with _registry_lock:  # held while acquiring, so two threads of one process never race each other for it
        entry = _held.get(key)
        if entry is None:
            _take(backend, verb, say)
            stop = threading.Event()
            threading.Thread(target=_keep_fresh, args=(backend, stop), daemon=True,
                             name=f"duo-lock-{task}").start()
            entry = _held[key] = [0, backend, stop]
            _release_on_signals()
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


# --------------------------------------------------------------------------- releasing on a signal


def release_held(timeout_s: float = RELEASE_WAIT_S) -> None:
    """Stop renewing and release every lock this process holds, waiting at most ``timeout_s``.

    Called from a signal handler: the main thread may be anywhere (holding the registry lock, or
    an HTTP connection), so the work runs in a thread of its own and the registry is read as is.
    """
    entries = list(_held.values())
    if not entries:
        return

    def release() -> None:
        for _, backend, stop in entries:
            stop.set()
            with suppress(Exception):  # dying anyway: a lock not released lapses at its expiry
                backend.release()

    worker = threading.Thread(target=release, name="duo-lock-release", daemon=True)
    worker.start()
    worker.join(timeout_s)


def _on_signal(signum, frame) -> None:
    """Release the locks, then do what the signal did before."""
    release_held()
    previous = _before.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)  # SIGINT's default raises KeyboardInterrupt
    else:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # die of the same signal, as without the handler


def _release_on_signals() -> None:
    """Install :func:`_on_signal` for SIGTERM and SIGINT, once, where a signal ends the process
    (an ignored signal stays ignored: that process lives on, and so does its lock)."""
    if _before or threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if previous in (signal.SIG_IGN, None):
            continue
        signal.signal(signum, _on_signal)
        _before[signum] = previous


# --------------------------------------------------------------------------- duo unlock


def inspect(store, task: str) -> tuple[object, dict | None]:
    """(the lock of ``task`` in ``store``, its record or None when no lock is held)."""
    backend = backend_for(store, task)
    return backend, backend.read()


def remove(backend, record: dict) -> bool:
    """Delete the lock ``record`` (read by :func:`inspect`); False when another took its place."""
    return backend.remove(record)
