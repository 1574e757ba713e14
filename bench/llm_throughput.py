"""How close the engine runs to a requests-per-minute limit against the rate-limited fake OpenAI server.

    python bench/llm_throughput.py --requests 600 --rpm 600 --latency 2
    python bench/llm_throughput.py --compare llamaduo --rpm 600 --latency 0.5 --rate-429 0.1 --requests 600

The fake refuses what goes over ``--rpm`` in any 60 s as OpenAI does (429, "on requests per min (RPM)",
Retry-After until the window has room), answers after ``--latency`` seconds, and with ``--rate-429`` refuses that
share of requests at random with the same 429 (Retry-After ``--retry-after``, default one request interval,
60/rpm s: what a server at that limit asks for). duo runs with the default service config (only ``rpm`` set,
``--concurrency`` to pin it). "of limit" is requests reaching the server per minute (each retry counts: the
server counts it too) between the first and the last, over ``--rpm``; "end to end" is answers per minute of wall
time. ``--compare llamaduo`` then runs a reference client that re-implements LlamaDuo's scheduler
(deep-diver/llamaduo, src/gen/utils.py ``_calculate_job_distribution``): launch ``j = int(rpm / (3 * workers))``
requests at once, await them all, sleep ``60 / j`` s, retry a failure at once up to 10 times; its judge
(src/pipeline/eval.py) feeds that loop ``eval_workers`` prompts at a time, so it launches ``min(j, eval_workers)``.
Each reference run stops launching after ``--max-seconds`` (it has prompts enough to go on). The last line printed is
``duo X of limit, llamaduo Y of limit, ratio Z`` (Y: LlamaDuo's judge scheduler).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.llm import Engine, Request
from tests.fakes.http_base import windows_exceeded
from tests.fakes.openai_fixtures import service_cfg
from tests.fakes.openai_server import FakeOpenAI

PERIOD = 60.0


def prepared(fake: FakeOpenAI, args) -> FakeOpenAI:
    """``fake`` reset, with the bench's limit, latency and injected 429s."""
    fake.reset()
    retry_after = args.retry_after if args.retry_after is not None else PERIOD / args.rpm
    fake.set_faults(latency_s=args.latency, rate_429=args.rate_429, retry_after=retry_after, seed=args.seed)
    fake.set_rate_limit(rpm=args.rpm, period=PERIOD, fault_bucket="requests")
    return fake


def figures(fake: FakeOpenAI, answered: int, wall: float, rpm: float) -> dict:
    """Send rate (of the limit), end-to-end rate, the busiest 60 s window and the 429s, from the fake's log."""
    log = fake.requests(method="POST", path="/chat/completions")
    times = sorted(e["t"] for e in log)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    send_rpm = (len(times) - 1) / span * PERIOD if span > 0 else 0.0
    return {"sent": len(times), "answered": answered, "wall": wall, "of_limit": send_rpm / rpm,
            "e2e": answered / wall * PERIOD / rpm if wall > 0 else 0.0,
            "busiest": int(rpm) + windows_exceeded(times, rpm, PERIOD),
            "over_limit": fake.fault_counts["over_limit"], "injected_429": fake.fault_counts["429"]}


def report(name: str, f: dict, rpm: float) -> None:
    print(f"{name:>15}: {f['of_limit']:.3f} of limit ({f['sent']} sent, {f['answered']} answered in "
          f"{f['wall']:.1f} s; end to end {f['e2e']:.3f}); busiest 60 s window {f['busiest']} (limit {rpm:g}"
          f"{', OVER' if f['busiest'] > rpm else ''}); 429s: {f['over_limit']} over the limit, "
          f"{f['injected_429']} injected")


def run_duo(fake: FakeOpenAI, args) -> dict:
    overrides = {"rpm": args.rpm}
    if args.concurrency is not None:
        overrides["concurrency"] = args.concurrency if args.concurrency == "auto" else int(args.concurrency)
    engine = Engine(service_cfg(**overrides), progress=False)
    reqs = [Request(key=str(i), messages=[{"role": "user", "content": f"question {i}"}]) for i in range(args.requests)]
    start = time.monotonic()
    results = engine.run(reqs, desc="bench")
    return figures(fake, sum(r.ok for r in results), time.monotonic() - start, args.rpm)


# -- the reference client: LlamaDuo's scheduler ----------------------------------------------------------------------
def job_distribution(rpm: float, workers: int) -> tuple[int, float]:
    """LlamaDuo's ``_calculate_job_distribution``: (jobs launched at once, seconds slept after each launch)."""
    jobs = int(rpm / 60 / (1 / 20) / workers)  # "assuming 20 sec per job"
    jobs = jobs or 1
    return jobs, 60 / jobs


async def call_service_llm(client, prompt: str, retry_num: int = 10):
    """LlamaDuo's ``call_service_llm``: ask, and on any error ask again at once, up to ``retry_num`` tries."""
    for _ in range(retry_num):
        try:
            reply = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": prompt}])
            return reply.choices[0].message.content
        except Exception:  # noqa: BLE001, S112 - as LlamaDuo does: print and retry at once
            continue
    return None


async def llamaduo(prompts: list[str], workers: int, batch: int | None, rpm: float, max_seconds: float) -> int:
    """Launch ``min(j, batch)`` (synthesis: ``j``) prompts at once, await all, sleep ``60 / j`` s, until done or
    ``max_seconds`` have passed; the number answered."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(max_retries=0, timeout=120)
    jobs, sleep_s = job_distribution(rpm, workers)
    at_once = min(jobs, batch) if batch else jobs
    queue, answered, start = deque(prompts), 0, time.monotonic()
    try:
        while queue and time.monotonic() - start < max_seconds:
            launched = [queue.popleft() for _ in range(min(at_once, len(queue)))]
            results = await asyncio.gather(*(call_service_llm(client, p) for p in launched))
            answered += sum(r is not None for r in results)
            await asyncio.sleep(sleep_s)
    finally:
        await client.close()
    return answered


def run_llamaduo(fake: FakeOpenAI, args, batch: int | None) -> dict:
    # more prompts than it can send in --max-seconds at twice the limit: the time cap ends it, and a scheduler that
    # bursts over the limit shows it in the busiest window
    prompts = [f"question {i}" for i in range(max(args.requests, int(args.rpm * args.max_seconds / PERIOD * 2)))]
    start = time.monotonic()
    answered = asyncio.run(llamaduo(prompts, args.workers, batch, args.rpm, args.max_seconds))
    return figures(fake, answered, time.monotonic() - start, args.rpm)


def parse(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests to send (default 300)")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds the fake takes to answer (default 0.5)")
    parser.add_argument("--rpm", type=float, default=600, help="requests-per-minute limit (default 600)")
    parser.add_argument("--rate-429", type=float, default=0.0, help="share of requests refused with a 429 at random")
    parser.add_argument("--retry-after", type=float, default=None,
                        help="Retry-After seconds of those 429s (default 60/rpm: one request interval)")
    parser.add_argument("--concurrency", default=None,
                        help="pin duo's concurrency (an integer, or auto); default: the config's default")
    parser.add_argument("--compare", choices=["llamaduo"], default=None,
                        help="also run a reference client re-implementing that project's scheduler")
    parser.add_argument("--workers", type=int, default=4,
                        help="LlamaDuo's gen_workers / eval_workers (its configs' default: 4)")
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="a reference run stops launching after this many seconds (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the injected faults")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    fake = FakeOpenAI().start()
    os.environ["OPENAI_API_KEY"] = fake.api_key
    os.environ["OPENAI_BASE_URL"] = fake.url + "/v1"
    import openai  # noqa: F401 - imported before the clock starts: the bench times the engine, not the import

    print(f"requests={args.requests} rpm={args.rpm:g} latency={args.latency:g}s rate_429={args.rate_429:g} "
          f"concurrency={args.concurrency or 'default'}")
    try:
        duo = run_duo(prepared(fake, args), args)
        report("duo", duo, args.rpm)
        if args.compare:
            judge = run_llamaduo(prepared(fake, args), args, batch=args.workers)
            report("llamaduo judge", judge, args.rpm)
            synth = run_llamaduo(prepared(fake, args), args, batch=None)
            report("llamaduo synth", synth, args.rpm)
            ratio = duo["of_limit"] / judge["of_limit"] if judge["of_limit"] else float("inf")
            print(f"duo {duo['of_limit']:.2f} of limit, llamaduo {judge['of_limit']:.2f} of limit, ratio {ratio:.1f}")
    finally:
        fake.stop()
    return 0 if duo["busiest"] <= args.rpm else 1


if __name__ == "__main__":
    raise SystemExit(main())
