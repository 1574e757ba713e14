"""Requests-per-minute and tokens-per-minute limiting that
never exceeds either limit in any window of one period.

A token bucket of capacity R allows a burst of R and then R more within the same minute, about 2R in
some 60 s window. Here every grant is checked against a sliding window of the grants of the last
period (plus a small margin for the time a request spends on its way to the server), and requests
are also paced evenly, one every ``period / rpm`` seconds, so a long run stays close to the limit
without bursts. Grants are first come, first served: only the head of the queue may be granted, and
it waits on a condition (never sleeping with the lock held) that ``settle``, a timer for the wait it
computed, and every grant wake. A request's tokens are estimated when its grant is made (``acquire``
takes a callable), and the estimate is replaced by the real count when the reply arrives
(``settle``); the token limit holds when estimates are not below the real counts (they are upper
bounds when ``max_tokens`` is set).

The request pace also follows 429s that are not the account's limit (AIMD, ``throttled`` /
``succeeded``): when they persist, the pace is cut by ``AIMD_DECREASE``; each answer adds
``AIMD_INCREASE`` of the configured rate back, up to it.

A send refused by such a 429 gives its grant back (``refund``: it leaves the window and its place in
the pace) while the server has not shown that it counts what it refuses; the first 429 that says the
account is at its limit shows that it does (OpenAI: "unsuccessful requests contribute to your
per-minute limit"), and ``refusals_counted`` puts the refunded grants back and stops refunding
(the config's ``refusals_count`` can settle it: ``counts_refusals``).

With ``token_pace`` on (the engine turns it on for a run whose tokens do not fit one window), token
grants are paced too: each one's tokens hold the next grant for ``tokens * window / tpm`` seconds
(corrected when ``settle`` gives the real count; a grant may come ``TOKEN_PACE_AHEAD`` of the
window early), so the window's room is used evenly over the run, not in a burst each time the
window frees room and a wait until it frees more (a burst that OpenAI's shorter-period enforcement
may refuse, too).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

AIMD_DECREASE = 0.7  # the pace is multiplied by this when 429s persist
AIMD_INCREASE = 0.02  # of the configured rate, given back by each answer
AIMD_FLOOR = 0.1  # the pace never falls below this share of the configured rate
PERSISTENT = (6, 20)  # 429s persist when at least 6 of the last 20 outcomes were 429s
# the share of the window a token grant may come ahead of the token pace, so that a run the window
# already holds to its limit is held less by the pace as well (bench/llm_throughput.py, 20k TPM:
# 0 costs 5.5% of the rate, 1/12 3.5%, 1/6 1.7%; the mean 60 s window 0.94, 0.94, 0.93)
TOKEN_PACE_AHEAD = 1 / 12


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
        self.scale = 1.0  # the share of the configured request rate paced at now (AIMD)
        self._outcomes: deque[bool] = deque(maxlen=PERSISTENT[1])  # True: a 429
        self._clock = clock
        self._sleep = sleep
        self._grants: deque[Grant] = deque()
        self.refunds = True  # a refused send gives its grant back (until ``refusals_counted``)
        self._learns = True  # an account-limit 429 stops the refunds (``counts_refusals``)
        self._refunded: deque[Grant] = deque()  # grants given back within the last window
        self._last: float | None = None
        self.token_pace = False  # pace token grants too (see the module docstring)
        self._token_at = 0.0  # the clock time the token pace allows the next grant at
        self._paused_until = {"requests": 0.0, "tokens": 0.0}  # per bucket, from 429s
        self._queue: deque[object] = deque()  # tickets of the waiting acquires, first come first
        self._cond: asyncio.Condition | None = None
        self._cond_loop = None

    @property
    def spacing(self) -> float:
        """Seconds between two grants: the configured pace, slowed by AIMD."""
        return self.period / (self.rpm * self.scale) if self.rpm else 0.0

    def pause(self, seconds: float, bucket: str | None = None) -> None:
        """Hold sends for ``seconds`` from now, no longer (a 429 that says the account is over a
        limit). ``bucket``: ``"requests"`` holds every send; ``"tokens"`` holds every send that
        books tokens; None (the server did not say which) holds both. Sends then resume one
        ``spacing`` apart, as ever: the pause never adds to the grants the window allows, so
        nothing bursts when it ends."""
        until = self._clock() + max(0.0, seconds)
        for name in (bucket,) if bucket in self._paused_until else tuple(self._paused_until):
            self._paused_until[name] = max(self._paused_until[name], until)

    def paused_until(self, bucket: str) -> float:
        """The clock time until which ``bucket`` (``"requests"`` or ``"tokens"``) is held by a 429."""
        return self._paused_until[bucket]

    def throttled(self) -> None:
        """A send was refused with a 429: when 429s persist, slow the pace (multiplicative decrease);
        the outcomes seen so far are forgotten, so one burst of 429s cuts the pace once."""
        self._outcomes.append(True)
        if sum(self._outcomes) >= PERSISTENT[0]:
            self.scale = max(AIMD_FLOOR, self.scale * AIMD_DECREASE)
            self._outcomes.clear()

    def succeeded(self) -> None:
        """A send was answered: the pace grows back towards the configured rate (additive increase)."""
        self._outcomes.append(False)
        self.scale = min(1.0, self.scale + AIMD_INCREASE)

    def _wait_needed(self, now: float, tokens: int) -> float:
        while self._grants and self._grants[0].t <= now - self.window:
            self._grants.popleft()
        wait = max(0.0, self._paused_until["requests"] - now)
        if tokens:
            wait = max(wait, self._paused_until["tokens"] - now)
            if self.token_pace and self.tpm:
                wait = max(wait, self._token_at - TOKEN_PACE_AHEAD * self.window - now)
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

    def _condition(self) -> asyncio.Condition:
        loop = asyncio.get_running_loop()
        if self._cond is None or self._cond_loop is not loop:  # a Condition belongs to one event loop
            self._cond, self._cond_loop, self._queue = asyncio.Condition(), loop, deque()
        return self._cond

    async def acquire(self, tokens: int | Callable[[], int] = 0) -> Grant:
        """Wait until one more request fits; grants are first come, first served. ``tokens``: its
        estimated tokens, or a callable that gives them when the grant is made."""
        cond, ticket = self._condition(), object()
        self._queue.append(ticket)
        try:
            async with cond:
                while True:
                    if self._queue[0] is ticket:
                        now = self._clock()
                        booked = tokens() if callable(tokens) else tokens
                        wait = self._wait_needed(now, booked)
                        if wait <= 0:
                            break
                    else:
                        wait = None
                    await self._wait(cond, wait)
                grant = Grant(now, booked)
                self._grants.append(grant)
                if self.token_pace and self.tpm:
                    self._token_at = max(self._token_at, now) + self._token_s(booked)
                # pace from the planned slot, not the late wake-up, so sleep overshoot does not add
                # up over a run; the window check above still bounds every period
                late = None if self._last is None else now - (self._last + self.spacing)
                self._last = self._last + self.spacing if late is not None and late < self.spacing else now
                return grant
        finally:
            self._queue.remove(ticket)
            self._wake()

    async def _wait(self, cond: asyncio.Condition, seconds: float | None) -> None:
        """Wait (the lock released) for a notify, or for ``seconds`` when given."""
        timer = asyncio.ensure_future(self._ring(cond, seconds)) if seconds is not None else None
        try:
            await cond.wait()
        finally:
            if timer is not None:
                timer.cancel()

    async def _ring(self, cond: asyncio.Condition, seconds: float) -> None:
        await self._sleep(seconds)
        await self._notify(cond)

    @staticmethod
    async def _notify(cond: asyncio.Condition) -> None:
        async with cond:
            cond.notify_all()

    def _wake(self) -> None:
        """Have the waiters look again (room was freed, or the head of the queue changed)."""
        cond = self._cond
        if cond is None or not self._queue:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if loop is self._cond_loop:
            loop.create_task(self._notify(cond))

    def _token_s(self, tokens: int) -> float:
        """Seconds of the token pace that ``tokens`` take: the window's share they use."""
        return tokens * self.window / self.tpm

    def refund(self, grant: Grant) -> bool:
        """A send the server refused without counting it (a 429 that is not the account's limit):
        its grant leaves the window and gives its place in the pace back, and a waiter may take
        it. Nothing is refunded once ``refusals_counted``; returns whether it was."""
        if not self.refunds or grant not in self._grants:
            return False
        self._grants.remove(grant)
        self._refunded.append(grant)
        while self._refunded and self._refunded[0].t <= self._clock() - self.window:
            self._refunded.popleft()
        if self._last is not None and self.spacing:
            self._last -= self.spacing
        if self.token_pace and self.tpm:
            self._token_at -= self._token_s(grant.tokens)
        self._wake()
        return True

    def counts_refusals(self, setting: bool | str = "auto") -> None:
        """What the config says of the server (``refusals_count``): True, it counts the sends it
        refuses, and none is refunded; False, it does not, and each is, whatever a 429 says;
        ``"auto"``, each is until ``refusals_counted``."""
        self.refunds, self._learns = setting is not True, setting == "auto"

    def refusals_counted(self) -> None:
        """The server counts the sends it refuses (a 429 said the account is at its limit although
        this window had room): the grants refunded within the window go back into it, and no
        grant is refunded from now on."""
        if self.refunds and self._learns:
            self.refunds = False
            self._grants = deque(sorted([*self._grants, *self._refunded], key=lambda g: g.t))
            self._refunded.clear()

    def settle(self, grant: Grant, tokens: int) -> None:
        """Replace a grant's estimated tokens by the real count from the reply; a waiter that now
        fits is woken."""
        freed = grant.tokens > tokens
        if self.token_pace and self.tpm:
            self._token_at += self._token_s(tokens - grant.tokens)
        grant.tokens = tokens
        if freed:
            self._wake()
