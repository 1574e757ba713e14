"""How many items the engine works on at once: a pinned number, or
(``concurrency: auto``) what keeps the rate limiter busy at the observed latency.

Little's law: to send ``rate`` requests a second that take ``latency`` seconds each,
``rate * latency`` must be in flight. ``auto`` aims at ``rate * p90 latency * HEADROOM`` items (the
headroom covers the items that wait in the rate limiter or after a 429), where ``rate`` is the lower
of the request limit and the token limit divided by the mean tokens of a request, bounded by
``max_concurrency`` and by the token limit itself (the tokens of every item in flight fit in one
window). The latency counts the time items wait out their own 429's Retry-After, per send. The pace
is the rate limiter's alone: this only keeps enough work queued in front of it.
With neither limit there is no rate to follow: ``auto`` keeps ``NO_LIMIT_CONCURRENCY`` (a local
server queues what it cannot run at once, and a deep queue turns into timeouts). The latency is the
p90 of the recent sends, or the age of the oldest send in flight when that is longer (a lower bound:
the target grows while replies are slow to come, the first ones included; ``FIRST_LATENCY_S`` before
any).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable

HEADROOM = 1.5
FIRST_LATENCY_S = 1.0  # the latency assumed before any request has been sent
LATENCIES_KEPT = 200  # the p90 is over this many most recent sends
NO_LIMIT_CONCURRENCY = 8  # auto without rpm or tpm (no rate to follow): the old fixed default
REFRESH_S = 0.25  # how often waiting items look again at a target that grows with the age of slow requests


def in_flight_cap(cfg) -> int:
    """The most items a service config lets the engine work on at once: its pinned ``concurrency``, else
    ``max_concurrency``."""
    pinned = getattr(cfg, "concurrency", "auto")
    return int(pinned) if pinned != "auto" else int(getattr(cfg, "max_concurrency", 256))


class InFlight:
    """The engine's gate: ``async with inflight.slot():`` around each item;
    ``started()``/``finished()`` around each send, which feed the latency (and token) figures the
    target follows.

    Args:
        concurrency: an int pins the number; ``"auto"`` follows the limits below.
        rpm, tpm: the request and token limits per ``period`` (None: no such limit).
        cap: the most items at once under ``auto`` (``max_concurrency``).
        period: seconds of the limits' window.
        clock: injectable for tests.
    """

    def __init__(self, concurrency: int | str = "auto", rpm: float | None = None,
                 tpm: float | None = None, *, cap: int = 256, period: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.pinned = None if concurrency == "auto" else max(1, int(concurrency))
        self.rpm, self.tpm, self.cap, self.period = rpm, tpm, max(1, int(cap)), period
        self._clock = clock
        self._latencies: deque[float] = deque(maxlen=LATENCIES_KEPT)
        self._p90: float | None = None
        self._tokens = [0, 0]  # sends with a reply, their tokens
        self._sends: dict[int, float] = {}  # send id -> start time, for the sends in flight
        self._order: deque[int] = deque()  # send ids in the order they started (finished ones leave lazily)
        self._next_id = 0
        self._finished = 0
        self._held = 0.0  # seconds items spent waiting out their own 429's Retry-After, all told
        self.active = 0
        self._waiters: deque[asyncio.Future] = deque()
        self._timer = None

    # -- the figures ------------------------------------------------------------------------------
    def started(self) -> int:
        """A send begins; returns its id for ``finished``."""
        self._next_id += 1
        self._sends[self._next_id] = self._clock()
        self._order.append(self._next_id)
        return self._next_id

    def finished(self, send: int, tokens: int | None = None) -> None:
        """A send ended (answered, refused or timed out);
        ``tokens``: the input and output tokens of its reply."""
        start = self._sends.pop(send, None)
        if start is not None:
            self._latencies.append(self._clock() - start)
            self._finished += 1
            # a sort of 200 per reply adds up at 100k
            if len(self._latencies) < 50 or self._finished % 10 == 0:
                ordered = sorted(self._latencies)
                self._p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
        if tokens is not None:
            self._tokens[0] += 1
            self._tokens[1] += tokens
        self._admit()

    def held(self, seconds: float) -> None:
        """An item waits ``seconds`` out of its own 429's Retry-After, its slot held: the target counts
        that time per send beside the latency (Little's law)."""
        self._held += max(0.0, seconds)
        self._admit()

    @property
    def p90(self) -> float | None:
        """The p90 of the recent sends' latencies (None before the first ended)."""
        return self._p90

    def sending(self) -> int:
        """Sends started and not yet ended."""
        return len(self._sends)

    def latency(self) -> float:
        """Seconds a send takes: the p90 of the recent ones, or the age of the oldest in flight when
        that is longer (a lower bound while replies are slow to come), at least ``FIRST_LATENCY_S``
        before any reply."""
        while self._order and self._order[0] not in self._sends:
            self._order.popleft()
        oldest = self._clock() - self._sends[self._order[0]] if self._order else 0.0
        return max(self._p90 if self._p90 is not None else FIRST_LATENCY_S, oldest)

    def tokens_per_request(self) -> float | None:
        """Mean input plus output tokens of the replies so far, or None before the first."""
        return self._tokens[1] / self._tokens[0] if self._tokens[0] else None

    def target(self) -> int:
        """How many items may be in flight now."""
        if self.pinned is not None:
            return self.pinned
        rates, bound = [], self.cap
        if self.rpm:
            rates.append(self.rpm / self.period)
        per_request = self.tokens_per_request()
        if self.tpm and per_request:
            rates.append(self.tpm / self.period / per_request)
            # every item in flight fits one window
            bound = min(bound, max(1, math.floor(self.tpm / per_request)))
        if not rates:
            return min(bound, NO_LIMIT_CONCURRENCY)
        held = self._held / self._finished if self._finished else 0.0
        return max(1, min(bound, math.ceil(min(rates) * (self.latency() + held) * HEADROOM)))

    # -- the gate ---------------------------------------------------------------------------------
    def slot(self) -> _Slot:
        return _Slot(self)

    async def acquire(self) -> None:
        if not self._waiters and self.active < self.target():
            self.active += 1
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._tick_later()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # admitted and cancelled at once: give the slot back
            raise  # else its future is cancelled, and _admit skips it (removing it here is O(n) per item)

    def release(self) -> None:
        self.active -= 1
        self._admit()

    def _admit(self) -> None:
        """Let waiting items in, first come first served, while the target allows."""
        while self._waiters and self.active < self.target():
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                self.active += 1

    def _tick_later(self) -> None:
        """While items wait, look at the target again now and then: it grows with the age of slow sends."""
        loop = asyncio.get_running_loop()
        if not self._waiters or (self._timer is not None and self._timer[0] is loop):
            # none waits, or a look is already planned on this loop (a timer of an earlier run's
            # loop is dead)
            return

        def tick():
            self._timer = None
            self._admit()
            self._tick_later()

        self._timer = (loop, loop.call_later(REFRESH_S, tick))


class _Slot:
    def __init__(self, gate: InFlight):
        self.gate = gate

    async def __aenter__(self):
        await self.gate.acquire()
        return self

    async def __aexit__(self, *exc):
        self.gate.release()
        return False
