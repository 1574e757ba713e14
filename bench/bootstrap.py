"""What 10,000 bootstrap resamples cost and buy (issue #20, part 5).

    nice -n 10 .venv/bin/python bench/bootstrap.py [--seeds 300]

Prints, for 50, 200 and 1,000 prompts:
  * the time of one call (median of repeats) of ``percentile_ci_with_error`` (the resampling and the CI's
    Monte-Carlo error) and of ``paired_diff`` (that, plus the sd and scipy's t-test and Wilcoxon p-values)
    at 10,000 resamples, and of ``percentile_ci`` at the old 1,000;
  * the Monte-Carlo error of the CI's bounds at 1,000 and 10,000 resamples: ``mc_error``'s estimate (its
    mean over seeds) against each bound's actual standard deviation over ``--seeds`` seeds;
and, for a paired difference whose CI's lower bound sits at 0, the words it gets under seeds 0..19: from the
CI alone (before issue #20) and from ``change_word`` with ``mc_error``, at 1,000 and 10,000 resamples.
Also the one-off cost of importing scipy.stats, which the first p-value of a process pays.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.stats.bootstrap import percentile_ci_with_error
from pipeline.stats.paired import change_word, paired_diff, percentile_ci

SIZES = (50, 200, 1000)


def per_call(fn, repeats: int) -> float:
    """Median seconds of one call of ``fn`` over ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pairs(diffs) -> tuple[dict, dict]:
    b = {f"p{i:04d}": 0.5 for i in range(len(diffs))}
    return {k: 0.5 + float(d) for k, d in zip(b, diffs)}, b


def timings() -> None:
    print("time of one call (median), per-prompt differences ~ N(0.1, 0.3)")
    print(f"{'prompts':>8} | {'percentile_ci 1k':>16} | {'percentile_ci_with_error 10k':>28} | "
          f"{'paired_diff 10k':>15}")
    for n in SIZES:
        diffs = np.random.default_rng(n).normal(0.1, 0.3, size=n)
        a, b = pairs(diffs)
        repeats = 30 if n < 1000 else 10
        old = per_call(lambda d=diffs: percentile_ci(d, samples=1000), repeats)
        new = per_call(lambda d=diffs: percentile_ci_with_error(d, samples=10_000), repeats)
        full = per_call(lambda a=a, b=b: paired_diff(a, b, samples=10_000), repeats)
        print(f"{n:>8} | {old * 1e3:>13.1f} ms | {new * 1e3:>25.1f} ms | {full * 1e3:>12.1f} ms")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import scipy.stats"], check=True)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    print(f"importing scipy.stats, once per process: {cold - (time.perf_counter() - start):.2f} s")


def mc_errors(seeds: int) -> None:
    print(f"\nMonte-Carlo error of the 95% CI's bounds, over {seeds} seeds (differences ~ N(0.1, 0.3)):\n"
          "each bound's sd over the seeds, and mc_error (the larger bound's estimate) averaged over them")
    print(f"{'prompts':>8} | {'resamples':>9} | {'sd of ci_low':>12} | {'sd of ci_high':>13} | "
          f"{'mc_error':>8} | {'mc_error / larger sd':>20}")
    for n in SIZES:
        diffs = np.random.default_rng(n).normal(0.1, 0.3, size=n)
        for samples in (1000, 10_000):
            runs = np.array([percentile_ci_with_error(diffs, samples=samples, seed=s) for s in range(seeds)])
            low, high = (float(np.std(runs[:, i], ddof=1)) for i in (0, 1))
            estimate = float(np.mean(runs[:, 2]))
            print(f"{n:>8} | {samples:>9} | {low:>12.5f} | {high:>13.5f} | {estimate:>8.5f} | "
                  f"{estimate / max(low, high):>20.2f}")


def borderline_words() -> None:
    diffs = np.random.default_rng(20).normal(0.3, 1.0, size=50)
    diffs -= percentile_ci(diffs, samples=400_000, seed=99)[0]  # the lower bound at 0, up to MC error
    a, b = pairs(diffs)
    print("\nwords for a difference whose CI's lower bound is 0 (50 prompts, "
          f"t-test p = {paired_diff(a, b)['p_value']:.3f}), under seeds 0..19")
    for samples in (1000, 10_000):
        results = [paired_diff(a, b, samples=samples, seed=s) for s in range(20)]
        alone = Counter(change_word({k: d[k] for k in ("ci_low", "ci_high")}) for d in results)
        with_mc = Counter(change_word(d) for d in results)
        print(f"{samples:>6} resamples: CI alone {dict(alone)}; with mc_error {dict(with_mc)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=300, help="seeds behind each Monte-Carlo error figure")
    args = parser.parse_args(argv)
    timings()
    mc_errors(args.seeds)
    borderline_words()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
