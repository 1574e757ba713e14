"""The rate limiter keeps every window of one period within the limits, in virtual time."""

from __future__ import annotations

import asyncio

from pipeline.llm.limiter import RateLimiter
from tests.fakes.http_base import windows_exceeded


class VirtualTime:
    def __init__(self):
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


def grant_times(limiter: RateLimiter, n: int, tokens: int = 0, concurrency: int = 16) -> list[float]:
    async def main():
        sem = asyncio.Semaphore(concurrency)
        times = []

        async def one():
            async with sem:
                grant = await limiter.acquire(tokens)
                times.append(grant.t)

        await asyncio.gather(*(one() for _ in range(n)))
        return times

    return asyncio.run(main())


def test_windows_exceeded_counts_half_open_windows():
    assert windows_exceeded([0, 1, 2, 59.9], 4, 60) == 0
    assert windows_exceeded([0, 1, 2, 59.9], 3, 60) == 1
    assert windows_exceeded([0, 60, 120], 1, 60) == 0


def test_requests_never_exceed_rpm_in_any_window_and_run_close_to_it():
    vt = VirtualTime()
    limiter = RateLimiter(rpm=30, period=60, clock=vt.clock, sleep=vt.sleep)
    times = grant_times(limiter, 300)
    assert windows_exceeded(times, 30, 60) <= 0
    achieved = (len(times) - 1) / (max(times) - min(times)) * 60
    assert 0.97 * 30 <= achieved <= 30


def test_a_token_bucket_burst_would_fail_the_same_check():
    # why the limiter paces: R at once, then R more as soon as the bucket refills, is 2R in one window
    burst = [0.0] * 30 + [30.0 + i * 2 for i in range(15)]
    assert windows_exceeded(burst, 30, 60) > 0


def test_tokens_per_minute_hold_and_settle_frees_room():
    vt = VirtualTime()
    limiter = RateLimiter(tpm=1000, period=60, clock=vt.clock, sleep=vt.sleep)
    times = grant_times(limiter, 12, tokens=300)
    for start in times:
        inside = [t for t in times if start <= t < start + 60]
        assert len(inside) * 300 <= 1000
    assert max(times) >= 3 * 60  # 12 grants at 3 a window need four windows

    vt2 = VirtualTime()
    limiter2 = RateLimiter(tpm=1000, period=60, clock=vt2.clock, sleep=vt2.sleep)

    async def settled():
        for _ in range(6):
            grant = await limiter2.acquire(300)
            limiter2.settle(grant, 100)  # the reply used fewer tokens than estimated
        return vt2.now

    assert asyncio.run(settled()) == 0.0


def test_pause_holds_every_send():
    vt = VirtualTime()
    limiter = RateLimiter(rpm=600, period=60, clock=vt.clock, sleep=vt.sleep)

    async def main():
        await limiter.acquire()
        limiter.pause(5.0)
        return (await limiter.acquire()).t

    assert asyncio.run(main()) >= 5.0


def test_no_limits_never_waits():
    vt = VirtualTime()
    times = grant_times(RateLimiter(clock=vt.clock, sleep=vt.sleep), 100)
    assert max(times) == 0.0
