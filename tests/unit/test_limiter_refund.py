"""Issue #24: a send refused by a 429 that is not the account's limit gives its grant back (it leaves the window and
its place in the pace) until a 429 at the account's limit shows that the server counts refusals; then the refunded
grants go back into the window and nothing more is refunded."""

from __future__ import annotations

import asyncio
import random

from pipeline.llm.limiter import RateLimiter
from tests.unit.test_limiter_wake import Timeline, settled


def three_then_one(refund: bool, counted: bool = False) -> tuple[float, RateLimiter]:
    """rpm=3 a 60 s window: three grants 20 s apart, the second refused at random (refunded when ``refund``; the
    server then shows that it counts refusals when ``counted``); the time of a fourth grant."""
    tl = Timeline()
    limiter = RateLimiter(rpm=3, period=60, clock=tl.clock, sleep=tl.sleep)

    async def main():
        grants = []
        for at in (0.0, 20.0, 40.0):
            await tl.advance(at)
            grants.append(await limiter.acquire())
        assert [g.t for g in grants] == [0.0, 20.0, 40.0]
        if refund:
            assert limiter.refund(grants[1])
        if counted:
            limiter.refusals_counted()
            assert not limiter.refund(grants[2])  # nothing is refunded once refusals are known to count
        fourth = asyncio.ensure_future(limiter.acquire())
        await settled()
        t = 40.0
        while not fourth.done():
            t += 0.1
            await tl.advance(t)
            await settled()
        return fourth.result().t

    return asyncio.run(main()), limiter


def test_a_refused_send_gives_its_grant_back():
    kept, _ = three_then_one(refund=False)
    assert kept >= 60.0  # the window is full until the first grant leaves it
    refunded, limiter = three_then_one(refund=True)
    assert refunded == 40.0  # the refunded grant's room and its place in the pace are used at once
    assert limiter.refunds


def test_once_refusals_are_known_to_count_the_refunded_grants_are_back():
    counted, limiter = three_then_one(refund=True, counted=True)
    assert counted >= 60.0 and not limiter.refunds


def test_the_config_can_settle_whether_refusals_count():
    limiter = RateLimiter(rpm=3, period=60)
    limiter.counts_refusals(False)  # never counted: an account-limit 429 does not stop the refunds
    limiter.refusals_counted()
    assert limiter.refunds
    limiter.counts_refusals(True)  # always counted: nothing is refunded
    assert not limiter.refunds
    limiter.counts_refusals("auto")
    limiter.refusals_counted()
    assert not limiter.refunds


def answered_windows(token_pace: bool) -> tuple[list[int], float]:
    """40 prompts of 800-1,200 tokens, each answered in 0.55 s by a reply as long (booked as the prompt plus the
    longest reply, 1,200), eight at a time, at 20,000 TPM: the tokens in each 60 s window that starts at a grant
    and ends by the last one, and the run's tokens a minute over the limit."""
    tl = Timeline()
    limiter = RateLimiter(tpm=20_000, period=60, clock=tl.clock, sleep=tl.sleep)
    limiter.token_pace = token_pace
    gate, grants = asyncio.Semaphore(8), []

    async def one(prompt: int):
        async with gate:
            grant = await limiter.acquire(prompt + 1200)
            await tl.sleep(0.55)
            limiter.settle(grant, 2 * prompt)
            grants.append(grant)

    async def main():
        tasks = []
        for i in range(40):
            tasks.append(asyncio.ensure_future(one(random.Random(i).randint(800, 1200))))
            await asyncio.sleep(0)  # queued in order
        t = 0.0
        while not all(task.done() for task in tasks):
            t += 0.05
            await tl.advance(t)

    asyncio.run(main())
    last = max(g.t for g in grants)
    windows = [sum(g.tokens for g in grants if s.t <= g.t < s.t + 60) for s in grants if s.t + 60 <= last]
    return windows, sum(g.tokens for g in grants) / (last + 0.55) * 60 / 20_000


def test_a_paced_token_limit_fills_every_window_not_a_burst_then_a_wait():
    burst, burst_rate = answered_windows(token_pace=False)
    paced, paced_rate = answered_windows(token_pace=True)
    assert max(burst) <= 20_000 and max(paced) <= 20_000  # never over the limit, either way
    # bursts: a window that starts inside one misses the next, which comes a little more than 60 s later
    assert sum(burst) / len(burst) < 0.8 * 20_000
    assert sum(paced) / len(paced) >= 0.9 * 20_000 and min(paced) >= 0.8 * 20_000
    assert paced_rate >= burst_rate - 0.05  # for a few percent of the run's rate
