"""Requests-per-minute and tokens-per-minute limiting that
never exceeds either limit in any window of one period.

A token bucket of capacity R allows a burst of R and then R more within the same minute, about 2R in
some 60 s window. Here every grant is checked against a sliding window of the grants of the last
period (plus a small margin for the time a request spends on its way to the server), and requests
are also paced evenly, one every ``period / rpm`` seconds, so a long run stays close to the limit
without bursts. Tokens are estimated before a request is sent and the estimate is replaced by the
real count when the reply arrives (``settle``); the token limit holds when estimates are not below
the real counts (they are upper bounds when ``max_tokens`` is set).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable


class Grant:
    """One granted send: its time and the tokens counted for it (updated by ``RateLimiter.settle``)."""

    __slots__ = ("t", "tokens")

    def __init__(self, t: float, tokens: int):
        self.t = t
        self.tokens = tokens


class RateLimiter:
    """Async limiter. ``await acquire(tokens)`` before each send;
    ``settle(grant, real_tokens)`` after the reply.

    Args:
        rpm: requests per period, or None for no request limit.
        tpm: tokens per period, or None for no token limit.
        period: seconds of the window (60 for per-minute limits; tests use a shorter one).
        margin_s: extra seconds added to the window, for the time between a grant and the server seeing the
            request; default ``0.01 * period + 0.1``.
        clock, sleep: injectable for tests with virtual time.
    """

    def __init__(self, rpm: float | None = None, tpm: float | None = None, *, period: float = 60.0,
                 margin_s: float | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable] = asyncio.sleep):
        self.rpm = rpm
        self.tpm = tpm
        self.period = period
        self.window = period + (0.01 * period + 0.1 if margin_s is None else margin_s)
        self.spacing = period / rpm if rpm else 0.0
        self._clock = clock
        self._sleep = sleep
        self._grants: deque[Grant] = deque()
        self._last: float | None = None
        self._paused_until = {"requests": 0.0, "tokens": 0.0}  # per bucket, from 429s
        self._lock: asyncio.Lock | None = None
        self._lock_loop = None

    def pause(self, seconds: float, bucket: str | None = None) -> None:
        """Hold sends for ``seconds`` from now, no longer (a 429 with Retry-After: the account, not
        just one request, is over a limit). ``bucket``: ``"requests"`` holds every send;
        ``"tokens"`` holds every send that books tokens; None (the server did not say which) holds
        both. Sends then resume one ``spacing`` apart, as ever: the pause never adds to the grants
        the window allows, so nothing bursts when it ends."""
        until = self._clock() + max(0.0, seconds)
        for name in (bucket,) if bucket in self._paused_until else tuple(self._paused_until):
            self._paused_until[name] = max(self._paused_until[name], until)

    def paused_until(self, bucket: str) -> float:
        """The clock time until which ``bucket`` (``"requests"`` or ``"tokens"``) is held by a 429."""
        return self._paused_until[bucket]

    def _wait_needed(self, now: float, tokens: int) -> float:
        while self._grants and self._grants[0].t <= now - self.window:
            self._grants.popleft()
        wait = max(0.0, self._paused_until["requests"] - now)
        if tokens:
            wait = max(wait, self._paused_until["tokens"] - now)
        if self._last is not None and self.spacing:
            wait = max(wait, self._last + self.spacing - now)
        cap = max(1, int(self.rpm)) if self.rpm else 0
        if cap and len(self._grants) >= cap:
            # the oldest grant that must leave the window before one more fits
            wait = max(wait, self._grants[-cap].t + self.window - now)
        if self.tpm and self._grants:
            used = sum(g.tokens for g in self._grants)
            if used + tokens > self.tpm:
                # drop grants oldest first until the new one fits; a request bigger than the limit
                # waits for an empty window, then goes alone
                for g in self._grants:
                    used -= g.tokens
                    if used + tokens <= self.tpm or used <= 0:
                        wait = max(wait, g.t + self.window - now)
                        break
        return wait

    async def acquire(self, tokens: int = 0) -> Grant:
        """Wait until one more request of ``tokens`` estimated tokens fits;
        grants are first come, first served."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:  # an asyncio.Lock belongs to one event loop
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:
            while True:
                now = self._clock()
                wait = self._wait_needed(now, tokens)
                if wait <= 0:
                    break
                await self._sleep(wait)
            grant = Grant(now, tokens)
            self._grants.append(grant)
            # pace from the planned slot, not the late wake-up, so sleep overshoot does not add up
            # over a run; the window check above still bounds every period
            late = None if self._last is None else now - (self._last + self.spacing)
            self._last = self._last + self.spacing if late is not None and late < self.spacing else now
            return grant

    def settle(self, grant: Grant, tokens: int) -> None:
        """Replace a grant's estimated tokens by the real count from the reply."""
        grant.tokens = tokens
