"""Which offline metric ranks answers right: real models' and deliberately degraded answers scored against gpt-4o.

    nice -n 10 python bench/metric_ranking.py --prompts 200 --seed 0 --models /tmp/alpaca_models

Every candidate set is scored against the reference (gpt-4o's answer) with duo's own
``pipeline.stats.metrics.offline_scores``. For each metric it prints the mean and per-prompt SD of every set, Kendall's
tau-b between the set means and the expected order, the pairs ranked against that order, and the separation of
adjacent levels: mean paired difference / SD of the paired difference (Cohen's d_z), with the number of test
prompts a paired test needs to tell the two apart (two-sided 5%, power 80%: n = 7.85 / d^2).

Real models' answers are AlpacaEval ``model_outputs.json`` files (one per model, named ``<model>.json``) in
``--models``, joined to the reference by instruction; the AlpacaEval data is CC BY-NC 4.0 (tatsu-lab/alpaca_eval).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.data.embeddings import DEFAULT_MODEL
from pipeline.stats.metrics import offline_scores

METRICS = ("rougeL", "bleu", "embedding")
REFERENCE = Path("/work/shared/data/alpaca_eval/gpt-4o-2024-05-13.json")
# AlpacaEval 2.0 length-controlled win rate vs gpt4_1106_preview (weighted_alpaca_eval_gpt4_turbo leaderboard):
# an outside quality order for the real models, reported as information, not part of the expected order.
LC_WIN_RATE = {
    "gpt-4o-2024-05-13": 57.5, "claude-3-5-sonnet-20240620": 52.4, "gpt-4o-mini-2024-07-18": 50.7,
    "gpt4_1106_preview": 50.0, "gemini-pro": 24.4, "Mistral-7B-Instruct-v0.2": 17.1, "gemma-2b-it": 5.4,
    "llama-2-7b-chat-hf": 5.4, "Qwen1.5-1.8B-Chat": 2.6,
}
STRONG_MIN_LC = 40.0  # real models at or above this LC win rate form the "strong" level of the expected order
CANNED = "I'm sorry, I can't help with that."
GENERIC = ("That's a great question. There are several factors to consider, and the best approach depends on "
           "your specific situation and goals. Let me know if you would like more details.")
# Expected order, best first; sets on one level are tied. Real models below STRONG_MIN_LC are informative only.
LEVELS = [["reference"], ["<strong>"], ["trunc50"], ["trunc25"], ["shuffled"], ["other_prompt"],
          ["canned", "generic", "echo"], ["empty"]]
Z = (1.959964 + 0.841621) ** 2  # paired test, two-sided alpha 0.05, power 0.8


def load(path: Path) -> dict[str, str]:
    return {r["instruction"]: r["output"] or "" for r in json.loads(path.read_text())}


def truncate(text: str, frac: float) -> str:
    """The text up to the end of its first ``frac`` of words, formatting kept."""
    ends = [m.end() for m in re.finditer(r"\S+", text)]
    return text[:ends[max(1, round(len(ends) * frac)) - 1]] if ends else text


def kendall_tau_b(x, y) -> float:
    """Kendall's tau-b (ties in either ranking allowed)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    i, j = np.triu_indices(len(x), 1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    n0 = len(i)
    n1, n2 = np.sum(dx == 0), np.sum(dy == 0)
    denom = math.sqrt((n0 - n1) * (n0 - n2))
    return float(np.sum(dx * dy) / denom) if denom else float("nan")


def separation(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    """Mean paired difference a-b, its SD, d_z = mean/SD and the prompts a paired test needs."""
    d = a - b
    sd = float(d.std(ddof=1))
    dz = float(d.mean()) / sd if sd > 0 else float("inf")
    need = math.ceil(Z / dz ** 2) if dz not in (0.0, float("inf")) else (1 if dz else float("inf"))
    return float(d.mean()), sd, dz, need


def _memoize_embeddings() -> None:
    """Embed each distinct text once: offline_scores re-embeds the references for every set, and the canned sets
    repeat one text. The vectors are the embedder's own, so the scores are unchanged."""
    from pipeline.data.embeddings import get_embedder

    embedder = get_embedder(DEFAULT_MODEL)
    encode, cache = embedder.encode, {}

    def cached(texts, batch_size=32):
        new = list(dict.fromkeys(t for t in texts if t not in cache))
        if new:
            cache.update(zip(new, encode(new, batch_size)))
        return np.stack([cache[t] for t in texts]) if texts else encode([], batch_size)

    embedder.encode = cached


def build_sets(prompts: list[str], refs: list[str], models: dict[str, dict[str, str]], seed: int
               ) -> dict[str, list[str]]:
    rng = random.Random(seed)
    sets: dict[str, list[str]] = {"reference": list(refs)}
    for name, answers in models.items():
        sets[name] = [answers[p] for p in prompts]
    sets["trunc50"] = [truncate(r, 0.5) for r in refs]
    sets["trunc25"] = [truncate(r, 0.25) for r in refs]
    shuffled = []
    for r in refs:
        words = r.split()
        rng.shuffle(words)
        shuffled.append(" ".join(words))
    sets["shuffled"] = shuffled
    perm = list(range(len(refs)))
    while any(i == p for i, p in enumerate(perm)):  # a derangement: never a prompt's own answer
        rng.shuffle(perm)
    sets["other_prompt"] = [refs[p] for p in perm]
    sets["canned"] = [CANNED] * len(refs)
    sets["generic"] = [GENERIC] * len(refs)
    sets["echo"] = list(prompts)
    sets["empty"] = [""] * len(refs)
    return sets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200, help="prompts sampled from the reference (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the sample and the shuffles (default 0)")
    parser.add_argument("--reference", type=Path, default=REFERENCE,
                        help=f"AlpacaEval model_outputs.json of the reference model (default {REFERENCE})")
    parser.add_argument("--models", type=Path, default=None,
                        help="folder of other models' AlpacaEval model_outputs.json files named <model>.json "
                             "(default: the other .json files beside --reference)")
    parser.add_argument("--max-chars", type=int, default=None,
                        help="keep only prompts whose instruction + reference answer has at most this many "
                             "characters (the example's data uses 620)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the embedding (default 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write the per-set means and SDs here")
    args = parser.parse_args(argv)

    ref = load(args.reference)
    folder = args.models or args.reference.parent
    models = {p.stem: load(p) for p in sorted(folder.glob("*.json")) if p.resolve() != args.reference.resolve()}
    models = dict(sorted(models.items(), key=lambda kv: -LC_WIN_RATE.get(kv[0], -1)))
    pool = [p for p in ref if all(p in m for m in models.values())]
    if args.max_chars:
        pool = [p for p in pool if len(p) + len(ref[p]) <= args.max_chars]
    prompts = random.Random(args.seed).sample(pool, min(args.prompts, len(pool)))
    refs = [ref[p] for p in prompts]
    sets = build_sets(prompts, refs, models, args.seed)
    strong = [m for m in models if LC_WIN_RATE.get(m, 0) >= STRONG_MIN_LC]
    levels = [lv if lv != ["<strong>"] else strong for lv in LEVELS]
    levels = [lv for lv in levels if lv]
    ranked = [s for lv in levels for s in lv]
    expected = {s: -k for k, lv in enumerate(levels) for s in lv}

    import torch
    torch.set_num_threads(args.threads)
    _memoize_embeddings()
    print(f"reference {args.reference.name}; {len(prompts)} of {len(pool)} prompts (seed {args.seed}); "
          f"median reference length {int(np.median([len(r.split()) for r in refs]))} words; "
          f"models: {', '.join(models) or 'none'}")
    print(f"expected order: {' > '.join('=' .join(lv) for lv in levels)}")
    scores: dict[str, dict[str, np.ndarray]] = {}
    t0 = time.monotonic()
    for name, cands in sets.items():
        out = offline_scores(METRICS, cands, refs, embedding_model=DEFAULT_MODEL)
        scores[name] = {m: np.asarray(v, float) for m, v in out.items()}
    print(f"scored {len(sets)} sets x {len(prompts)} answers in {time.monotonic() - t0:.0f} s\n")

    summary: dict = {"prompts": len(prompts), "seed": args.seed, "metrics": {}}
    for metric in METRICS:
        means = {s: float(scores[s][metric].mean()) for s in sets}
        sds = {s: float(scores[s][metric].std(ddof=1)) for s in sets}
        print(f"== {metric} ==")
        print(f"{'set':28s} {'level':>5s} {'LC win':>6s} {'mean':>8s} {'SD':>8s}")
        for s in sorted(sets, key=lambda s: -means[s]):
            lv = str(-expected[s]) if s in expected else "-"
            lc = f"{LC_WIN_RATE[s]:.1f}" if s in LC_WIN_RATE else ""
            print(f"{s:28s} {lv:>5s} {lc:>6s} {means[s]:8.3f} {sds[s]:8.3f}")
        tau = kendall_tau_b([means[s] for s in ranked], [expected[s] for s in ranked])
        wrong = [f"{b}>{a}" for i, a in enumerate(ranked) for b in ranked[i + 1:]
                 if expected[a] > expected[b] and means[b] >= means[a]]
        mat = np.stack([scores[s][metric] for s in ranked])
        per_prompt = [kendall_tau_b(mat[:, k], [expected[s] for s in ranked]) for k in range(mat.shape[1])]
        per_prompt_tau = float(np.nanmean(per_prompt))
        real = [m for m in models if m in LC_WIN_RATE]
        real_tau = kendall_tau_b([means[m] for m in real], [LC_WIN_RATE[m] for m in real]) if len(real) > 1 else None
        ladder = [s for s in ranked if s not in models]
        ladder_tau = kendall_tau_b([means[s] for s in ladder], [expected[s] for s in ladder])
        print(f"right order: {'yes' if not wrong else 'no'}; Kendall tau-b vs expected (set means) {tau:.3f}; "
              f"mean per-prompt tau-b {per_prompt_tau:.3f}; degraded sets only {ladder_tau:.3f}")
        if wrong:
            print(f"  ranked against the expected order: {', '.join(wrong)}")
        if real_tau is not None:
            print(f"real models: tau-b vs AlpacaEval LC win rate {real_tau:.3f} (informative)")
        pooled_sd = float(np.sqrt(np.mean([sds[m] ** 2 for m in models]))) if models else float("nan")
        if models:
            print(f"per-prompt SD pooled over the real models {pooled_sd:.3f}")
        print("separation (paired; d_z = mean diff / SD of diff; n = prompts for a paired test):")
        print(f"  {'higher':28s} {'lower':28s} {'diff':>8s} {'SD':>8s} {'d_z':>6s} {'n':>5s}")
        tier = [np.mean([scores[s][metric] for s in lv], axis=0) for lv in levels]
        pairs = [("=".join(levels[k]), "=".join(levels[k + 1]), tier[k], tier[k + 1]) for k in range(len(levels) - 1)]
        pairs += [(a, b, scores[a][metric], scores[b][metric]) for a, b in itertools.pairwise(real)]
        for a, b in (("gpt-4o-mini-2024-07-18", "Qwen1.5-1.8B-Chat"), ("gpt-4o-mini-2024-07-18", "gemini-pro"),
                     ("gemini-pro", "Qwen1.5-1.8B-Chat"), ("Qwen1.5-1.8B-Chat", "trunc25")):
            if a in scores and b in scores:
                pairs.append((a, b, scores[a][metric], scores[b][metric]))
        seps = []
        for a, b, x, y in pairs:
            diff, sd, dz, need = separation(x, y)
            seps.append({"higher": a, "lower": b, "diff": diff, "sd": sd, "dz": dz, "n": need})
            print(f"  {a[:28]:28s} {b[:28]:28s} {diff:8.3f} {sd:8.3f} {dz:6.2f} {need if dz > 0 else 'wrong':>5}")
        print()
        summary["metrics"][metric] = {"means": means, "sds": sds, "tau_b": tau, "ladder_tau_b": ladder_tau,
                                      "per_prompt_tau_b": per_prompt_tau, "wrong": wrong, "real_tau_b": real_tau, "separation": seps}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
