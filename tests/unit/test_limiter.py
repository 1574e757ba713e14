"""The rate limiter keeps every window of one period within the limits, in virtual time; 429 pauses hold their own
bucket for what was asked; ``concurrency: auto`` follows the limits at the observed latency."""

from __future__ import annotations

import asyncio
import itertools

from pipeline.llm.concurrency import InFlight
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


def test_a_pause_names_its_bucket_and_lasts_what_was_asked():
    vt = VirtualTime()
    limiter = RateLimiter(rpm=600, tpm=100_000, period=60, clock=vt.clock, sleep=vt.sleep)

    async def main():
        await limiter.acquire(100)
        limiter.pause(5.0, "tokens")  # the token bucket is over: a send that books no tokens may go
        free = (await limiter.acquire(0)).t
        booked = (await limiter.acquire(100)).t
        limiter.pause(3.0, "requests")
        return free, booked, (await limiter.acquire(0)).t, limiter.paused_until("tokens")

    free, booked, after_requests, tokens_until = asyncio.run(main())
    assert free < 1.0 and booked == 5.0 and after_requests == 8.0 and tokens_until == 5.0


def test_a_pause_that_names_no_bucket_holds_both():
    limiter = RateLimiter(rpm=60)
    limiter.pause(2.0)
    assert limiter.paused_until("requests") == limiter.paused_until("tokens") > 0


def test_after_a_pause_sends_resume_one_interval_apart_not_all_at_once():
    vt = VirtualTime()
    limiter = RateLimiter(rpm=600, period=60, clock=vt.clock, sleep=vt.sleep)

    async def main():
        await limiter.acquire()
        limiter.pause(2.0, "requests")
        return [g.t for g in await asyncio.gather(*(limiter.acquire() for _ in range(20)))]

    times = sorted(asyncio.run(main()))
    assert times[0] == 2.0
    assert all(b - a >= 0.1 - 1e-9 for a, b in itertools.pairwise(times))


# -- concurrency: auto follows the limits at the observed latency (Little's law) --------------------------------------
class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def observed(gate: InFlight, clock: Clock, latencies: list[float], tokens: int | None = None) -> InFlight:
    for latency in latencies:
        send = gate.started()
        clock.now += latency
        gate.finished(send, tokens)
    return gate


def test_auto_concurrency_is_rate_times_p90_latency_times_headroom():
    clock = Clock()
    gate = observed(InFlight("auto", rpm=600, clock=clock), clock, [2.0] * 9 + [1.0])
    assert gate.target() == 30  # 10 requests/s x 2 s x 1.5
    clock2 = Clock()
    gate2 = observed(InFlight("auto", rpm=600, clock=clock2), clock2, [0.5] * 20 + [5.0] * 3)
    assert gate2.target() == 75  # the p90 is the slow tail: 10/s x 5 s x 1.5


def test_auto_concurrency_is_bounded_by_the_cap_and_by_the_token_limit():
    clock = Clock()
    assert observed(InFlight("auto", rpm=600, cap=256, clock=clock), clock, [60.0] * 5).target() == 256
    clock = Clock()
    # 60k tokens a minute at 2000 a request is 0.5 request/s, whatever the rpm: 0.5 x 2 s x 1.5 = 2 (not 30)
    assert observed(InFlight("auto", rpm=600, tpm=60_000, clock=clock), clock, [2.0] * 5, 2000).target() == 2
    clock = Clock()
    # slow replies: 0.1/s x 60 s x 1.5 = 9, but only 6 requests of 10k tokens fit in one window of 60k
    assert observed(InFlight("auto", tpm=60_000, clock=clock), clock, [60.0] * 5, 10_000).target() == 6
    assert InFlight("auto").target() == 8 and InFlight("auto", cap=3).target() == 3  # no limit: no rate to follow


def test_auto_concurrency_grows_while_the_first_replies_are_slow_to_come():
    clock = Clock()
    gate = InFlight("auto", rpm=600, clock=clock)
    assert gate.target() == 15  # before any send: 1 s assumed
    gate.started()
    clock.now = 4.0
    assert gate.target() == 60  # the oldest send in flight is 4 s old: latency is at least that


def test_a_pinned_concurrency_is_kept_and_the_gate_holds_to_it():
    clock = Clock()
    assert observed(InFlight(8, rpm=600, clock=clock), clock, [30.0] * 5).target() == 8

    async def main():
        gate, order = InFlight(2), []

        async def item(i):
            async with gate.slot():
                order.append(("in", i, gate.active))
                await asyncio.sleep(0)
                order.append(("out", i))

        await asyncio.gather(*(item(i) for i in range(5)))
        return order, gate.active

    order, active = asyncio.run(main())
    assert max(entry[2] for entry in order if entry[0] == "in") == 2 and active == 0
    assert [entry[1] for entry in order if entry[0] == "in"] == [0, 1, 2, 3, 4]  # first come, first served
