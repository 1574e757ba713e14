"""Choosing synthesize.decontaminate.threshold: catch rate on paraphrases of test prompts vs false drops.

    nice -n 10 python bench/decontam_threshold.py [--config examples/alpaca-gpt4o/duo.yaml]

The test split is the example's own (``duo prepare`` into a temporary store). Probes are hand-written reorderings,
synonym swaps and paraphrases of those test prompts (``tests/data/paraphrase_probes.jsonl``, each with its source
prompt); the unrelated prompts are every other AlpacaEval prompt (``/work/shared/data/alpaca_eval``, CC BY-NC 4.0,
tatsu-lab/alpaca_eval) that is not in the test split. For each threshold it prints the share of probes the
semantic filter drops (catch rate) and the share of unrelated prompts it drops (false-drop rate), beside what the
lexical MinHash filter (``synthesize.decontamination_threshold``) catches on its own and what both catch together.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import load_config
from pipeline.data.decontam_semantic import SemanticFilter
from pipeline.data.dedup import PairFilter
from pipeline.records import read_jsonl
from pipeline.stages import prepare
from pipeline.store import open_store

PROBES = ROOT / "tests" / "data" / "paraphrase_probes.jsonl"
ALPACA = Path("/work/shared/data/alpaca_eval/gpt-4o-2024-05-13.json")
THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_split(config: Path) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(config, [f"store.path={tmp}/store"])
        store = open_store(cfg)
        prepare.run(cfg, store)
        return read_jsonl(store.open("prepare") / "test.jsonl")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "examples" / "alpaca-gpt4o" / "duo.yaml")
    ap.add_argument("--probes", type=Path, default=PROBES)
    ap.add_argument("--unrelated", type=Path, default=ALPACA)
    args = ap.parse_args()

    test = test_split(args.config)
    test_texts = {r["instruction"].strip() for r in test}
    probes = read_jsonl(args.probes)
    missing = [p["source_id"] for p in probes if p["source"].strip() not in test_texts]
    if missing:
        print(f"warning: {len(missing)} probes' source prompts are not in this test split: {missing[:5]}")
    unrelated = sorted({r["instruction"].strip() for r in json.loads(args.unrelated.read_text())} - test_texts)

    cfg = load_config(args.config)
    lexical = PairFilter(near_duplicate_threshold=cfg.synthesize.near_duplicate_threshold,
                         decontamination_threshold=cfg.synthesize.decontamination_threshold, min_response_chars=0)
    lexical.add_test((r["id"], r["instruction"]) for r in test)
    lex_probe = [lexical.check(p["probe"], "x")[0] == "test_overlap" for p in probes]
    lex_unrel = [lexical.check(u, "x")[0] == "test_overlap" for u in unrelated]

    start = time.perf_counter()
    sem = SemanticFilter(((r["id"], r["instruction"]) for r in test), threshold=1.0, model=cfg.synthesize
                         .decontaminate.model)
    probe_sims = [s for _, s in sem.nearest([p["probe"] for p in probes])]
    unrel_sims = [s for _, s in sem.nearest(unrelated)]
    took = time.perf_counter() - start

    n_p, n_u = len(probes), len(unrelated)
    print(f"test prompts {len(test)}, paraphrase probes {n_p}, unrelated prompts {n_u}; "
          f"embedding all took {took:.1f} s")
    print(f"lexical MinHash alone (decontamination_threshold {cfg.synthesize.decontamination_threshold}): "
          f"catches {sum(lex_probe)}/{n_p} probes, drops {sum(lex_unrel)}/{n_u} unrelated\n")
    print("| threshold | probes caught (semantic) | + MinHash | unrelated dropped (false drops) |")
    print("|---|---|---|---|")
    for t in THRESHOLDS:
        caught = [s >= t for s in probe_sims]
        both = sum(a or b for a, b in zip(caught, lex_probe))
        false = sum(s >= t for s in unrel_sims)
        print(f"| {t:.2f} | {sum(caught)}/{n_p} ({sum(caught) / n_p:.0%}) | {both}/{n_p} ({both / n_p:.0%}) | "
              f"{false}/{n_u} ({false / n_u:.1%}) |")
    by_kind: dict[str, list[float]] = {}
    for p, s in zip(probes, probe_sims):
        by_kind.setdefault(p["kind"], []).append(s)
    print("\nprobe similarity by kind: " + "; ".join(
        f"{k} n={len(v)} min {min(v):.2f} median {sorted(v)[len(v) // 2]:.2f}" for k, v in sorted(by_kind.items())))
    top = sorted(zip(unrel_sims, unrelated), reverse=True)[:8]
    print("most similar unrelated prompts: " + " | ".join(f"{s:.2f} {u[:60]!r}" for s, u in top))
    low = sorted(zip(probe_sims, (p["probe"] for p in probes)))[:8]
    print("least similar probes: " + " | ".join(f"{s:.2f} {p[:60]!r}" for s, p in low))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
