"""Time one ``duo run`` of the bundled example per stage, with peak RSS, in a fresh store (and model cache).

    python bench/run_example.py [--config examples/alpaca-gpt4o/duo.yaml] [--keep-cache] [--json out.json]

A fresh ``DUO_CACHE`` (the default) makes the run include the one-time GGUF -> safetensors conversion, as a first
``duo run`` on a new machine does. Prints the stage table and the total; ``--json`` also writes the records.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "examples" / "alpaca-gpt4o" / "duo.yaml"))
    parser.add_argument("--keep-cache", action="store_true", help="Use the usual DUO_CACHE (skip the conversion).")
    parser.add_argument("--json", default=None, help="Write the per-stage records here.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="Config override; repeatable.")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="duo-bench-"))
    if not args.keep_cache:
        os.environ["DUO_CACHE"] = str(work / "cache")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    from pipeline.config import load_config
    from pipeline.progress import summary_table
    from pipeline.stages.run import run_rounds
    from pipeline.store import open_store

    cfg = load_config(args.config, [f"store.path={work / 'store'}", f"report.dir={work / 'reports'}",
                                    *args.overrides])
    t0 = time.perf_counter()
    result = run_rounds(cfg, open_store(cfg), echo=print)
    wall = time.perf_counter() - t0
    peak = max((r.peak_rss_mb for r in result.records), default=0.0)
    print()
    print(summary_table(result.records))
    print(f"\ntotal wall {wall:.0f}s ({wall / 60:.1f} min); peak RSS {peak:.0f} MiB (the largest stage peak); cpus {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}")
    print(f"decision: {result.decision.get('decision')} ({result.stopped_because}); store {work / 'store'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"wall_s": round(wall, 1), "records": [r.as_dict() for r in result.records],
                                               "decision": result.decision}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
