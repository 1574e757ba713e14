"""How close the engine runs to a requests-per-minute limit against the fake OpenAI server.

    python bench/llm_throughput.py --requests 300 --rpm 600 --latency 0.5 --concurrency 16

Prints the achieved send rate (from the fake's request log) and the end-to-end rate as fractions of the limit,
and the most requests seen in any 60 s window (scaled to the run when it is shorter than a minute).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.llm import Engine, Request
from tests.fakes.http_base import windows_exceeded
from tests.fakes.openai_fixtures import service_cfg
from tests.fakes.openai_server import FakeOpenAI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests to send (default 300)")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds the fake takes to answer (default 0.5)")
    parser.add_argument("--rpm", type=float, default=600, help="requests-per-minute limit (default 600)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at most (default 16)")
    args = parser.parse_args(argv)

    fake = FakeOpenAI().start()
    fake.set_faults(latency_s=args.latency)
    os.environ["OPENAI_API_KEY"] = fake.api_key
    os.environ["OPENAI_BASE_URL"] = fake.url + "/v1"
    engine = Engine(service_cfg(rpm=args.rpm, concurrency=args.concurrency, max_retries=0), progress=False)
    reqs = [Request(key=str(i), messages=[{"role": "user", "content": f"question {i}"}]) for i in range(args.requests)]
    import openai  # noqa: F401 - imported before the clock starts: the bench times the engine, not the import

    start = time.monotonic()
    results = engine.run(reqs, desc="bench")
    wall = time.monotonic() - start
    fake.stop()
    times = sorted(e["t"] for e in fake.log)
    send_rpm = (len(times) - 1) / (times[-1] - times[0]) * 60
    e2e_rpm = len(results) / wall * 60
    print(f"requests={args.requests} rpm={args.rpm:g} latency={args.latency:g}s concurrency={args.concurrency} "
          f"ok={sum(r.ok for r in results)}")
    print(f"send rate {send_rpm:.1f}/min = {send_rpm / args.rpm:.3f} of the limit; "
          f"end to end {e2e_rpm:.1f}/min = {e2e_rpm / args.rpm:.3f} ({wall:.1f} s)")
    over = windows_exceeded(times, args.rpm, 60.0)
    print(f"most requests in any 60 s window: {int(args.rpm) + over} (limit {args.rpm:g})")
    return 0 if over <= 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
