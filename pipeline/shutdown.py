"""Stopping on SIGTERM/SIGINT (what GitHub sends on cancel and timeout) without losing paid work.

On the first SIGTERM or SIGINT, work in flight (``in_flight()``: requests sent and not yet
answered) gets up to ``STOP_GRACE_S`` to land while nothing new starts (``stopping()``); then the
stop hooks run, last registered first (so the journal, opened after the task's lock was taken,
reaches the store before the lock is released), and the signal does what it did before: the
default action ends the process by the same signal, Python's SIGINT handler raises
KeyboardInterrupt. No signal is swallowed: a second one during the wait acts at once, and a
previous handler that returns lets the run go on (``stopping()`` is False again).

A signal that was ignored when the handlers were installed (``SIG_IGN``: a background job's
SIGINT) stays ignored: nothing is installed for it, so it neither stops the run nor parks it.

Any layer registers with ``on_stop(fn)`` (which installs the handlers, from the main thread) and
unregisters with ``forget(fn)``; a hook may run more than once and must not raise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

# GitHub's cancel sends SIGINT, then SIGTERM 7.5 s later, then SIGKILL 2.5 s after that
STOP_GRACE_S = 5.0
SIGNALS = (signal.SIGTERM, signal.SIGINT)

log = logging.getLogger(__name__)
_HOOKS: list[Callable[[], object]] = []
_PREVIOUS: dict[int, object] = {}  # signal -> its disposition before ours (ignored ones are absent)
_LOCK = threading.Lock()
# signum: the signal being handled; inflight: work sent and not yet landed; handed_on: the signal
# went on to its previous disposition (the run is ending); epoch: which stop a drain belongs to
_STATE: dict = {"signum": None, "inflight": 0, "handed_on": False, "epoch": 0}


class Stopped(Exception):
    """Not started: the run is stopping on a signal."""


def on_stop(fn: Callable[[], object]) -> Callable[[], object]:
    """Run ``fn`` when a SIGTERM/SIGINT stops the process (after the work in flight landed)."""
    with _LOCK:
        if fn not in _HOOKS:
            _HOOKS.append(fn)
    install()
    return fn


def forget(fn: Callable[[], object]) -> None:
    """Stop running ``fn`` on a signal (what it guarded is done)."""
    with _LOCK:
        if fn in _HOOKS:
            _HOOKS.remove(fn)


def run_stop_hooks() -> None:
    """Run every hook, last registered first; a failing hook is logged and the others still run."""
    with _LOCK:
        hooks = list(reversed(_HOOKS))
    for fn in hooks:
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - stopping: say so, run the other hooks
            log.warning("on stop, %s failed: %s", getattr(fn, "__qualname__", fn), err)


def stopping() -> bool:
    """A SIGTERM/SIGINT is being handled: start nothing new."""
    return _STATE["signum"] is not None


def handed_on() -> bool:
    """The signal went on to end the run: what has not started never will (raise ``Stopped``)."""
    return _STATE["handed_on"]


@contextlib.contextmanager
def in_flight() -> Iterator[None]:
    """Around work sent and not yet landed (a request awaiting its reply): a signal waits for it."""
    with _LOCK:
        _STATE["inflight"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _STATE["inflight"] -= 1


def install() -> None:
    """Handle SIGTERM and SIGINT from now on, except a signal that is ignored (it stays ignored).
    A no-op off the main thread (Python allows handlers only there) and once installed."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in SIGNALS:
        if signum in _PREVIOUS:
            continue
        previous = signal.getsignal(signum)
        if previous == signal.SIG_IGN or previous is _on_signal:
            continue
        signal.signal(signum, _on_signal)
        _PREVIOUS[signum] = previous


def _reset() -> None:
    _STATE.update(signum=None, handed_on=False, epoch=_STATE["epoch"] + 1)


def _on_signal(signum, frame) -> None:
    if _STATE["signum"] is None:
        _STATE["signum"] = signum
        if _STATE["inflight"] > 0:
            threading.Thread(target=_drain, args=(signum, _STATE["epoch"]), name="stop-drain",
                             daemon=True).start()
            return  # back here from _drain once the replies landed or the grace ran out
    _hand_on(signum, frame)


def _drain(signum: int, epoch: int) -> None:
    deadline = time.monotonic() + STOP_GRACE_S
    while _STATE["inflight"] > 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)  # the engine journals a reply as soon as it is checked: no await in between
    if _STATE["epoch"] == epoch and not _STATE["handed_on"]:
        os.kill(os.getpid(), signum)  # to the main thread's handler, which hands it on


def _hand_on(signum: int, frame) -> None:
    """Run the stop hooks, then do what the signal did before ours."""
    _STATE["handed_on"] = True
    run_stop_hooks()
    previous = _PREVIOUS.get(signum)
    if callable(previous):
        previous(signum, frame)  # Python's SIGINT handler raises KeyboardInterrupt
        _reset()  # it returned: the program goes on, and so may its requests
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # die of the same signal, as without the handler
