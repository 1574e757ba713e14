"""How close the engine runs to a requests- or tokens-per-minute limit against the rate-limited fake OpenAI server.

    python bench/llm_throughput.py --requests 600 --rpm 600 --latency 2
    python bench/llm_throughput.py --compare llamaduo --rpm 600 --latency 0.5 --rate-429 0.1 --retry-after 1
    python bench/llm_throughput.py --compare llamaduo --tpm 20000 --prompt-words 1000 --requests 40

The fake refuses what goes over ``--rpm`` (or ``--tpm``) in any 60 s as OpenAI does (429, "on requests per min
(RPM)" / "tokens per min (TPM)", ``x-ratelimit-remaining-*: 0``, Retry-After until the window has room), answers
after ``--latency`` seconds (echoing the prompt: a reply as long as the prompt), and with ``--rate-429`` refuses
that share of requests at random with a 429 that does not say the account is at its limit (Retry-After
``--retry-after``, default 60/rpm s). duo runs with the default service config (only ``rpm``/``tpm`` set,
``--concurrency`` to pin it). The fake counts against ``--rpm`` the requests it accepts; it refuses an injected 429
before counting it (with ``--refused-count`` it counts every arrival, as OpenAI documents: "unsuccessful requests
contribute to your per-minute limit"). "of limit" is the requests the server counts (tokens: the tokens of the
answers) per minute between the first and the last, over the limit, and "busiest 60 s window" the most of them in
any 60 s (every arrival's busiest window is printed beside it); "answers/min" is answers per minute of wall time
over the limit (tokens: answered tokens). ``--compare llamaduo`` then runs a reference client that re-implements both of
LlamaDuo's loops (deep-diver/llamaduo, src/gen/utils.py ``_calculate_job_distribution``): launch
``j = int(rpm / (3 * workers))`` requests at once, await them all, sleep ``60 / j`` s, retry a failure at once up to
10 times, through its real client (``AsyncOpenAI`` with the SDK's default retries, which honour Retry-After). The
synthesis loop launches ``j``; the judge (src/pipeline/eval.py) feeds it ``eval_workers`` prompts at a time, so it
launches ``min(j, workers)``. Each loop runs at its best worker count: the judge's is ``sqrt(rpm / 3)`` (where
``j = workers``); the synthesis loop's is the best of the ``--synth-workers`` sweep. With ``--tpm`` LlamaDuo (which
has no token limit) is given the rpm that limit allows at the prompts' size. Each reference run stops launching
after ``--max-seconds``. "After the first minute" is answers per minute from 60 s after the first send to the last
answer; "mean 60 s window" is the mean, over the windows of 60 s that start at an answer and end by the last one, of
the answers (tokens) in them over the limit: per-minute rates of a run of a few minutes credit a client that bursts
at the start with a whole window at once, which it cannot keep up. The last line printed is ``duo X of limit, best
LlamaDuo loop Y, ratio Z`` in mean 60 s windows.
"""
from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sys
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.llm import Engine, Request
from tests.fakes.openai_fixtures import service_cfg
from tests.fakes.openai_server import FakeOpenAI

PERIOD = 60.0


def prepared(fake: FakeOpenAI, args) -> FakeOpenAI:
    """``fake`` reset, with the bench's limit, latency and injected 429s (random ones: no account-limit shape)."""
    fake.reset()
    retry_after = args.retry_after if args.retry_after is not None else PERIOD / (args.rpm or 60)
    fake.set_faults(latency_s=args.latency, rate_429=args.rate_429, retry_after=retry_after, seed=args.seed)
    fake.set_rate_limit(rpm=args.rpm if not args.tpm else None, period=PERIOD, tpm=args.tpm,
                        count_refused=args.refused_count)
    return fake


def tokens_of(entry: dict) -> int:
    """Prompt plus reply tokens (words) of an answered request: the fake echoes the last user message."""
    texts = [m["content"] for m in entry["body"]["messages"]]
    users = [m["content"] for m in entry["body"]["messages"] if m["role"] == "user"]
    return sum(len(t.split()) for t in texts) + (len(users[-1].split()) if users else 0)


def busiest(times: list[float], weights: list[int]) -> int:
    """The most weight in any half-open window ``[t, t + PERIOD)``."""
    pairs, most, start, total = sorted(zip(times, weights)), 0, 0, 0
    for end, (t, w) in enumerate(pairs):
        total += w
        while pairs[start][0] <= t - PERIOD:
            total -= pairs[start][1]
            start += 1
        most = max(most, total)
    return most


def mean_window(times: list[float], weights: list[int]) -> float:
    """The mean weight of the windows ``[t, t + PERIOD)`` that start at a time of ``times`` and end by the last one."""
    pairs = sorted(zip(times, weights))
    fills = [sum(w for u, w in pairs if t <= u < t + PERIOD) for t, _ in pairs if t + PERIOD <= pairs[-1][0]]
    return sum(fills) / len(fills) if fills else 0.0


def figures(fake: FakeOpenAI, answered: int, wall: float, args) -> dict:
    """Send rate and answers per minute (of the limit), the busiest 60 s window and the 429s, from the fake's log."""
    log = sorted(fake.requests(method="POST", path="/chat/completions"), key=lambda e: e["t"])
    ok = [e for e in log if e["status"] == 200]
    if args.tpm:  # tokens: only answers use them
        limit, counted = args.tpm, ok
        weights, done = [tokens_of(e) for e in ok], sum(tokens_of(e) for e in ok)
    else:  # requests: what the server counts: what it accepted, or (--refused-count) every arrival
        counted = log if args.refused_count else [e for e in log if e["status"] != 429]
        limit, weights, done = args.rpm, [1] * len(counted), answered
    times = [e["t"] for e in counted]
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    sent = sum(weights) - (weights[-1] if weights else 0)
    # after the first minute: a burst at the start gets a whole window at once, which no client can keep up
    late = [e for e in ok if log and e["t"] >= log[0]["t"] + PERIOD]
    late_span = late[-1]["t"] - (log[0]["t"] + PERIOD) if late else 0.0
    late_done = sum(tokens_of(e) for e in late) if args.tpm else len(late)
    return {"sent": len(log), "answered": answered, "wall": wall, "limit": limit,
            "of_limit": sent / span * PERIOD / limit if span > 0 else 0.0,
            "e2e": done / wall * PERIOD / limit if wall > 0 else 0.0,
            "steady": late_done / late_span * PERIOD / limit if late_span > 0 else 0.0,
            "window": mean_window([e["t"] for e in ok], [tokens_of(e) if args.tpm else 1 for e in ok]) / limit,
            "busiest": busiest(times, weights), "arrivals": busiest([e["t"] for e in log], [1] * len(log)),
            "over_limit": fake.fault_counts["over_limit"], "injected_429": fake.fault_counts["429"]}


def report(name: str, f: dict) -> None:
    print(f"{name:>22}: answers/min {f['e2e']:.3f} of limit, after the first minute {f['steady']:.3f}, mean 60 s "
          f"window of answers {f['window']:.3f}, sends "
          f"{f['of_limit']:.3f} ({f['sent']} sent, "
          f"{f['answered']} answered in {f['wall']:.1f} s); busiest 60 s window {f['busiest']} (limit {f['limit']:g}"
          f"{', OVER' if f['busiest'] > f['limit'] else ''}; every arrival: {f['arrivals']}); 429s: "
          f"{f['over_limit']} refused over the limit, {f['injected_429']} injected", flush=True)


def prompt(i: int, words: int) -> str:
    """The i-th prompt: ``question i``, or ``words`` words give or take a fifth (a seeded draw: real prompts vary,
    and prompts all of one size would fit a token window a whole number of times)."""
    if not words:
        return f"question {i}"
    n = random.Random(i).randint(int(words * 0.8), int(words * 1.2))
    return " ".join([f"q{i}"] + ["word"] * (n - 1))


def run_duo(fake: FakeOpenAI, args) -> dict:
    overrides = {"rpm": args.rpm if not args.tpm else None, "tpm": args.tpm}
    if args.concurrency is not None:
        overrides["concurrency"] = args.concurrency if args.concurrency == "auto" else int(args.concurrency)
    engine = Engine(service_cfg(**overrides), progress=False)
    reqs = [Request(key=str(i), messages=[{"role": "user", "content": prompt(i, args.prompt_words)}])
            for i in range(args.requests)]
    start = time.monotonic()
    results = engine.run(reqs, desc="bench")
    return figures(fake, sum(r.ok for r in results), time.monotonic() - start, args)


# -- the reference client: LlamaDuo's scheduler ----------------------------------------------------------------------
def job_distribution(rpm: float, workers: int) -> tuple[int, float]:
    """LlamaDuo's ``_calculate_job_distribution``: (jobs launched at once, seconds slept after each launch)."""
    jobs = int(rpm / 60 / (1 / 20) / workers)  # "assuming 20 sec per job"
    jobs = jobs or 1
    return jobs, 60 / jobs


async def call_service_llm(client, text: str, retry_num: int = 10):
    """LlamaDuo's ``call_service_llm``: ask, and on any error ask again at once, up to ``retry_num`` tries."""
    for _ in range(retry_num):
        try:
            reply = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}])
            return reply.choices[0].message.content
        except Exception:  # noqa: BLE001, S112 - as LlamaDuo does: print and retry at once
            continue
    return None


async def llamaduo(prompts: list[str], workers: int, batch: int | None, rpm: float, max_seconds: float) -> int:
    """Launch ``min(j, batch)`` (synthesis: ``j``) prompts at once, await all, sleep ``60 / j`` s, until done or
    ``max_seconds`` have passed; the number answered."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(timeout=120)  # LlamaDuo's client: the SDK's default retries (2, honouring Retry-After)
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


def llamaduo_rpm(args) -> float:
    """The rpm LlamaDuo is configured with: ``--rpm``, or under ``--tpm`` what that allows at the prompts' size."""
    if not args.tpm:
        return args.rpm
    return args.tpm / (2 * (args.prompt_words or 2) + 4)  # prompt and its echo


def run_llamaduo(fake: FakeOpenAI, args, workers: int, batch: int | None) -> dict:
    # more prompts than it can send in --max-seconds at twice the limit: the time cap ends it, and a scheduler that
    # bursts over the limit shows it in the busiest window
    rpm = llamaduo_rpm(args)
    count = max(args.requests, int(rpm * args.max_seconds / PERIOD * 2))
    prompts = [prompt(i, args.prompt_words) for i in range(count)]
    start = time.monotonic()
    answered = asyncio.run(llamaduo(prompts, workers, batch, rpm, args.max_seconds))
    return figures(fake, answered, time.monotonic() - start, args)


def compare(fake: FakeOpenAI, args) -> dict:
    """LlamaDuo's two loops at their best worker counts; the better one's figures."""
    rpm = llamaduo_rpm(args)
    workers = max(1, round(math.sqrt(rpm / 3)))  # the judge launches min(j, workers): most at j = workers
    best = run_llamaduo(prepared(fake, args), args, workers, batch=workers)
    report(f"llamaduo judge w={workers}", best)
    for w in [int(x) for x in args.synth_workers.split(",")]:
        synth = run_llamaduo(prepared(fake, args), args, w, batch=None)
        report(f"llamaduo synth w={w}", synth)
        best = synth if synth["window"] > best["window"] else best
    return best


def parse(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests to send (default 300)")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds the fake takes to answer (default 0.5)")
    parser.add_argument("--rpm", type=float, default=600, help="requests-per-minute limit (default 600)")
    parser.add_argument("--tpm", type=float, default=None,
                        help="a tokens-per-minute limit instead of --rpm (the fake counts words as tokens)")
    parser.add_argument("--prompt-words", type=int, default=0,
                        help="words in each prompt, give or take a fifth (default 0: 'question N'); the reply "
                             "echoes it")
    parser.add_argument("--rate-429", type=float, default=0.0, help="share of requests refused with a 429 at random")
    parser.add_argument("--retry-after", type=float, default=None,
                        help="Retry-After seconds of those 429s (default 60/rpm: one request interval)")
    parser.add_argument("--concurrency", default=None,
                        help="pin duo's concurrency (an integer, or auto); default: the config's default")
    parser.add_argument("--compare", choices=["llamaduo"], default=None,
                        help="also run a reference client re-implementing that project's scheduler")
    parser.add_argument("--synth-workers", default="1,4,10",
                        help="gen_workers values of LlamaDuo's synthesis loop to sweep (default 1,4,10; its configs: "
                             "4 to 100)")
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="a reference run stops launching after this many seconds (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the injected faults")
    parser.add_argument("--refused-count", action="store_true",
                        help="the fake counts refused requests against --rpm too, as OpenAI documents (default: "
                             "only accepted ones, so an injected 429 leaves the window's room unused)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    fake = FakeOpenAI().start()
    os.environ["OPENAI_API_KEY"] = fake.api_key
    os.environ["OPENAI_BASE_URL"] = fake.url + "/v1"
    import openai  # noqa: F401 - imported before the clock starts: the bench times the engine, not the import

    print(f"requests={args.requests} rpm={args.rpm:g} tpm={args.tpm} prompt_words={args.prompt_words} "
          f"latency={args.latency:g}s rate_429={args.rate_429:g} retry_after={args.retry_after} "
          f"concurrency={args.concurrency or 'default'}", flush=True)
    try:
        duo = run_duo(prepared(fake, args), args)
        report("duo", duo)
        if args.compare:
            best = compare(fake, args)
            ratio = duo["window"] / best["window"] if best["window"] else float("inf")
            print(f"duo {duo['window']:.2f} of limit, best LlamaDuo loop {best['window']:.2f}, ratio {ratio:.2f} "
                  f"(mean 60 s window of answers); duo's busiest 60 s {duo['busiest']} of {duo['limit']:g}")
    finally:
        fake.stop()
    return 0 if duo["busiest"] <= duo["limit"] and duo["over_limit"] == 0 else 1

if __name__ == "__main__":
    raise SystemExit(main())
