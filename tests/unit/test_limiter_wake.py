"""Issue #24: the token limiter uses the room it has. A waiter wakes when ``settle`` frees room (no fixed sleep),
its tokens are estimated when its grant is made, and the request pace follows persistent 429s (AIMD)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random

from pipeline.llm.concurrency import InFlight
from pipeline.llm.limiter import AIMD_DECREASE, PERSISTENT, RateLimiter


class Timeline:
    """Virtual time that moves only when the test says: ``sleep`` waits for ``advance``."""

    def __init__(self):
        self.now = 0.0
        self._sleepers: list = []
        self._n = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._n), fut))
        await fut

    async def advance(self, to: float) -> None:
        while self._sleepers and self._sleepers[0][0] <= to:
            t, _, fut = heapq.heappop(self._sleepers)
            self.now = t
            if not fut.done():
                fut.set_result(None)
            await settled()
        self.now = to
        await settled()


async def settled() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def test_settle_wakes_a_waiter_that_now_fits_at_once():
    tl = Timeline()
    limiter = RateLimiter(tpm=1000, period=60, clock=tl.clock, sleep=tl.sleep)

    async def main():
        first = await limiter.acquire(900)
        second = asyncio.ensure_future(limiter.acquire(900))
        await tl.advance(5.0)
        assert not second.done()  # 1800 > 1000: it waits
        limiter.settle(first, 80)  # the reply used far fewer tokens than booked
        await settled()
        assert second.done()
        return second.result().t

    assert asyncio.run(main()) == 5.0  # granted when the room was freed, not a window later


def test_the_estimate_is_made_when_the_grant_is_made():
    tl = Timeline()
    limiter = RateLimiter(tpm=1000, period=60, clock=tl.clock, sleep=tl.sleep)
    size = [900]

    async def main():
        first = await limiter.acquire(900)
        second = asyncio.ensure_future(limiter.acquire(lambda: size[0]))
        await settled()
        size[0] = 50  # what the replies have taught meanwhile
        limiter.settle(first, 899)
        await settled()
        return second.done() and second.result().tokens

    assert asyncio.run(main()) == 50


def test_waiters_are_served_first_come_first_served():
    tl = Timeline()
    limiter = RateLimiter(tpm=1000, period=60, clock=tl.clock, sleep=tl.sleep)

    async def main():
        first = await limiter.acquire(900)
        big = asyncio.ensure_future(limiter.acquire(900))
        small = asyncio.ensure_future(limiter.acquire(50))  # it would fit, but waits behind the big one
        await tl.advance(1.0)
        assert not big.done() and not small.done()
        limiter.settle(first, 10)
        await settled()
        return big.done() and small.done()

    assert asyncio.run(main())


def test_token_windows_hold_with_estimates_settled_lower_and_use_the_room():
    tl = Timeline()
    tpm, rng = 20_000, random.Random(0)
    limiter = RateLimiter(tpm=tpm, period=60, clock=tl.clock, sleep=tl.sleep)
    grants = []

    async def one():
        grant = await limiter.acquire(2200)  # an upper bound, as a calibrated estimate is
        await tl.sleep(2.0)  # the reply comes 2 s later and used 1,800-2,200 tokens
        limiter.settle(grant, rng.randint(1800, 2200))
        grants.append(grant)

    async def main():
        tasks = [asyncio.ensure_future(one()) for _ in range(100)]
        t = 0.0
        while not all(task.done() for task in tasks):
            t += 0.5
            await tl.advance(t)
        return t

    asyncio.run(main())
    last = max(g.t for g in grants)
    full = [sum(g.tokens for g in grants if s.t <= g.t < s.t + 60) for s in grants]
    assert max(full) <= tpm  # never over the limit in any window
    # the full windows after the first use the room: no window waits out a whole period for room freed early
    steady = [sum(g.tokens for g in grants if s.t <= g.t < s.t + 60) for s in grants if 60 <= s.t <= last - 60]
    assert steady and min(steady) >= 0.85 * tpm and sum(steady) / len(steady) >= 0.9 * tpm


def test_persistent_429s_slow_the_pace_and_answers_bring_it_back():
    limiter = RateLimiter(rpm=600, period=60)
    for _ in range(PERSISTENT[0]):
        limiter.throttled()
    assert limiter.scale == AIMD_DECREASE and abs(limiter.spacing - 0.1 / AIMD_DECREASE) < 1e-9
    for _ in range(20):
        limiter.succeeded()
    assert limiter.scale == 1.0 and abs(limiter.spacing - 0.1) < 1e-9


def test_one_429_in_ten_at_random_barely_slows_the_pace():
    limiter, rng, scales = RateLimiter(rpm=600, period=60), random.Random(1), []
    for _ in range(5000):
        limiter.throttled() if rng.random() < 0.1 else limiter.succeeded()
        scales.append(limiter.scale)
    assert sum(scales) / len(scales) >= 0.97


def test_auto_concurrency_counts_the_time_items_wait_out_their_own_429s():
    # Little's law: an item waiting out its own Retry-After holds its slot, so the target counts that time per send
    now = [0.0]
    gate = InFlight("auto", rpm=600, period=60, clock=lambda: now[0])
    send = gate.started()
    now[0] = 0.5
    gate.finished(send)
    assert gate.target() == 8  # 10/s x 0.5 s x 1.5
    gate.held(1.0)  # one send in one waited 1 s for its own 429
    assert gate.target() == 23  # 10/s x (0.5 + 1.0) s x 1.5
