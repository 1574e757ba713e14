"""How ``duo synthesize`` scales with the number of pairs asked for, against a zero-latency fake OpenAI server.

    python bench/synthesize_scale.py --sizes 1000 10000 100000

Each size runs the real stage (``prepare`` then ``synthesize.run``, the journal, dedup and decontamination) in a
fresh child process, so its peak memory is its own; the fake runs in this process and answers every request at
once with new pairs (instructions drawn from a Zipf-weighted vocabulary behind a few shared openings, so
near-duplicates and re-asks happen as with a real service). Prints, per size: wall time of the stage, peak RSS of
the child, the journal's size on disk, the time spent in dedup and in decontamination (``NearDupIndex`` lookups and
inserts; ``semantic s``: the MiniLM check against the test prompts, ``synthesize.decontaminate``), requests sent and
pairs kept/removed. ``--no-semantic`` turns the MiniLM check off (``synthesize.decontaminate.semantic: false``),
``--no-scrub`` the personal-data scrubbing of each request (``privacy.scrub: false``);
``--torch-threads`` (default 1) is the child's ``OMP_NUM_THREADS``: on a loaded 2-core machine torch's second
thread makes MiniLM ~10x slower, not faster.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SAMPLE = ROOT / "tests" / "data" / "alpaca_eval_sample.jsonl"
OPENINGS = ["Explain how", "Write a short note about", "What are the benefits of", "Compare", "Give three tips on",
            "Summarize the history of", "How would you teach", "List common mistakes with", "Describe",
            "Why do people care about"]
VOCAB = [f"{a}{b}{c}" for a, b, c in itertools.product(["ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "ze"],
                                                        ["b", "d", "g", "l", "m", "n", "r", "s", "t", "v"],
                                                        ["a", "e", "i", "o", "u", "ar", "en", "is", "on", "um"])]
WEIGHTS = [1 / (rank + 1) for rank in range(len(VOCAB))]  # Zipf: a few words are everywhere, most are rare


def instruction(n: int, k: int) -> str:
    rng = random.Random(f"{n}:{k}")
    return f"{rng.choice(OPENINGS)} {' '.join(rng.choices(VOCAB, WEIGHTS, k=rng.randint(6, 12)))}?"


def pair(n: int, k: int) -> dict:
    """Pair ``k`` of reply ``n``: new, or (1 in 10) an earlier reply's instruction again with one word changed."""
    rng = random.Random(f"pair:{n}:{k}")
    text = instruction(n, k)
    if n and rng.random() < 0.1:
        words = instruction(rng.randrange(n), rng.randrange(5)).split()
        words[rng.randrange(len(words))] = rng.choice(VOCAB)
        text = " ".join(words)
    response = " ".join(rng.choices(VOCAB, WEIGHTS, k=40))
    return {"instruction": text, "response": response.capitalize() + "."}


def responder():
    """Each call (a request, or a re-ask) gets pairs of its own: a counter, not the body, seeds them."""
    counter, lock = itertools.count(), threading.Lock()

    def respond(body: dict) -> dict:
        with lock:
            n = next(counter)
        return {"contents": [pair(n, k) for k in range(5)]}

    return respond


def config(folder: Path, size: int, semantic: bool, scrub: bool) -> Path:
    import yaml

    doc = {
        "task": {"name": "scale", "description": "helpful answers to general-assistant questions"},
        "data": {"source": str(SAMPLE), "test": {"size": 0.25, "seed": 3},
                 "columns": {"instruction": "instruction", "response": "output", "category": "dataset"}},
        "student": {"model": "m"},
        "service": {"synthesize": {"provider": "openai", "model": "gpt-4o", "rpm": None, "tpm": None,
                                   "concurrency": 32, "price_input_per_1m": 0.01, "price_output_per_1m": 0.01,
                                   "max_retries": 2, "schema_retries": 1, "timeout_s": 60}},
        "synthesize": {"samples": size, "pairs_per_request": 5, "max_attempts": 10, "seed": 1,
                       "decontaminate": {"semantic": semantic}},
        "budget": {"max_synthetic_samples": size, "max_spend_usd": 1000.0},
        "store": {"path": str(folder / "store")},
        "privacy": {"scrub": scrub},
    }
    path = folder / "duo.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def timed_index() -> dict:
    """Wrap NearDupIndex's lookups and inserts with timers, by index (decontamination: the test split's)."""
    from pipeline.data import dedup

    spent = {"dedup_s": 0.0, "decontam_s": 0.0, "semantic_s": 0.0}
    test_indexes: set[int] = set()
    filter_init = dedup.PairFilter.__init__

    def init(self, **kw):
        filter_init(self, **kw)
        test_indexes.add(id(self.test))

    def timing(fn):
        def wrapper(self, *args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(self, *args, **kwargs)
            finally:
                spent["decontam_s" if id(self) in test_indexes else "dedup_s"] += time.perf_counter() - t
        return wrapper

    dedup.PairFilter.__init__ = init
    dedup.NearDupIndex.match = timing(dedup.NearDupIndex.match)
    dedup.NearDupIndex.add = timing(dedup.NearDupIndex.add)
    try:
        from pipeline.data import decontam_semantic
    except ImportError:
        return spent
    check = decontam_semantic.SemanticFilter.check

    def semantic(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return check(self, *args, **kwargs)
        finally:
            spent["semantic_s"] += time.perf_counter() - t

    decontam_semantic.SemanticFilter.check = semantic
    return spent


def timed_gc(spent: dict) -> None:
    """Count the seconds Python's garbage collector runs (in ``spent["gc_s"]``)."""
    import gc

    spent["gc_s"], started = 0.0, [0.0]

    def callback(phase, info):
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            spent["gc_s"] += time.perf_counter() - started[0]

    gc.callbacks.append(callback)


def one(size: int, semantic: bool, scrub: bool) -> dict:
    """Run prepare + synthesize for ``size`` pairs in this process (the fake's URL in the environment)."""
    import resource

    spent = timed_index()
    timed_gc(spent)
    from pipeline.config import load_config
    from pipeline.stages import prepare, synthesize
    from pipeline.store import open_store

    with tempfile.TemporaryDirectory(prefix="duo-scale-") as tmp:
        cfg = load_config(config(Path(tmp), size, semantic, scrub), [])
        store = open_store(cfg)
        prepare.run(cfg, store)
        profile = None
        if os.environ.get("DUO_SCALE_PROFILE"):  # where the time goes, on stderr
            import cProfile

            profile = cProfile.Profile()
            profile.enable()
        t = time.perf_counter()
        m = synthesize.run(cfg, store, 1, samples=size)
        wall = time.perf_counter() - t
        if profile is not None:
            import pstats

            profile.disable()
            pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
        journal = sum(p.stat().st_size for p in store.journal_dir.rglob("*") if p.is_file())
        segments = sum(1 for _ in store.journal_dir.rglob("part-*.jsonl"))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"size": size, "wall_s": round(wall, 1), "peak_rss_mb": round(rss_mb), "journal_mb": round(journal / 2**20, 1),
            "segments": segments, "dedup_s": round(spent["dedup_s"], 1), "decontam_s": round(spent["decontam_s"], 1),
            "semantic_s": round(spent["semantic_s"], 1), "gc_s": round(spent["gc_s"], 1),
            "requests": m.counts["requests"], "kept": m.counts["kept"],
            "removed": sum(m.counts["removed"].values()), "attempts": m.counts["attempts"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000],
                        help="target pairs, one run each (default 1000 10000 100000)")
    parser.add_argument("--no-semantic", action="store_true",
                        help="turn the MiniLM semantic decontamination off (synthesize.decontaminate.semantic)")
    parser.add_argument("--no-scrub", action="store_true", help="turn personal-data scrubbing off (privacy.scrub)")
    parser.add_argument("--torch-threads", type=int, default=1, help="OMP_NUM_THREADS of the child (default 1)")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the child: one size, JSON out
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(one(args.one, not args.no_semantic, not args.no_scrub)))
        return 0

    from tests.fakes.openai_server import FakeOpenAI

    fake = FakeOpenAI().start()
    fake.set_responder(responder())
    env = {**os.environ, "OPENAI_API_KEY": fake.api_key, "OPENAI_BASE_URL": fake.url + "/v1",
           "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.torch_threads), "HF_HUB_OFFLINE": "1"}
    rows = []
    print(f"semantic decontamination {'off' if args.no_semantic else 'on'}, scrubbing {'off' if args.no_scrub else 'on'}"
          f", torch threads {args.torch_threads}")
    print("| target pairs | wall s | peak RSS MB | journal MB (segments) | dedup s | decontam s | semantic s "
          "| GC s | requests | kept | removed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        fake.reset()
        fake.set_responder(responder())
        child = [sys.executable, __file__, "--one", str(size)] + (["--no-semantic"] if args.no_semantic else []) + (
            ["--no-scrub"] if args.no_scrub else [])
        out = subprocess.run(child, env=env, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        rows.append(r)
        print(f"| {r['size']} | {r['wall_s']} | {r['peak_rss_mb']} | {r['journal_mb']} ({r['segments']}) "
              f"| {r['dedup_s']} | {r['decontam_s']} | {r['semantic_s']} | {r['gc_s']} | {r['requests']} | {r['kept']} "
              f"| {r['removed']} |", flush=True)
    fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
