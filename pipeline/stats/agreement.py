"""How often people and the judge agree on whether an answer is acceptable: accuracy and Cohen's κ,
each with a percentile bootstrap CI (``bootstrap.resample_means``).

The judge calls an answer acceptable when its decision-metric score is at or above the metric's
per-answer threshold; people say good or bad. κ = (p_o - p_e) / (1 - p_e), with p_o the share of
answers both call the same and p_e = p_p p_j + (1 - p_p)(1 - p_j) the agreement expected by chance
from each side's share of "acceptable" (p_p people's, p_j the judge's). κ's CI comes from the same
resamples as the three shares: ``resample_means`` with one seed draws the same indices for every
vector, so each resample's κ is computed from its own p_o, p_p and p_j; resamples where one side
calls every answer the same (p_e = 1, κ undefined) are left out.

A judge is flagged when people disagree with it: at least ``MIN_N`` labelled answers and κ below
``KAPPA_FLAG`` (less than moderate agreement), or, where κ is undefined, accuracy below
``ACCURACY_FLAG``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .bootstrap import percentile_ci, resample_means

MIN_N = 5
KAPPA_FLAG = 0.4
ACCURACY_FLAG = 0.7


def cohen_kappa(people: Sequence[bool], judge: Sequence[bool]) -> float | None:
    """Cohen's κ of two binary raters; None when undefined (both always give one and the same class)."""
    n = len(people)
    if n == 0:
        return None
    p_o = sum(a == b for a, b in zip(people, judge)) / n
    p_p, p_j = sum(people) / n, sum(judge) / n
    p_e = p_p * p_j + (1 - p_p) * (1 - p_j)
    return None if p_e >= 1 else (p_o - p_e) / (1 - p_e)


def kappa_ci(people: Sequence[bool], judge: Sequence[bool], *, samples: int, confidence: float,
             seed: int = 0) -> tuple[float | None, float | None]:
    """Percentile bootstrap CI of κ (resampling answers); (None, None) when too few resamples define it."""
    import numpy as np

    if len(people) < 2:
        return None, None
    agree = [float(a == b) for a, b in zip(people, judge)]
    p_o = resample_means(agree, samples=samples, seed=seed)
    p_p = resample_means([float(a) for a in people], samples=samples, seed=seed)
    p_j = resample_means([float(b) for b in judge], samples=samples, seed=seed)
    p_e = p_p * p_j + (1 - p_p) * (1 - p_j)
    defined = p_e < 1 - 1e-12
    if defined.sum() < 2:
        return None, None
    kappas = (p_o[defined] - p_e[defined]) / (1 - p_e[defined])
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(kappas, [alpha, 1.0 - alpha])
    return float(low), float(high)


def agreement(people: Sequence[bool], judge: Sequence[bool], *, samples: int = 10_000,
              confidence: float = 0.95, seed: int = 0) -> dict:
    """``n``, ``accuracy`` and ``kappa`` with their CIs (``*_ci_low``/``*_ci_high``), the 2x2 table
    (``both_good``, ``both_bad``, ``people_only`` good, ``judge_only`` good) and ``flagged``."""
    people, judge = [bool(p) for p in people], [bool(j) for j in judge]
    n = len(people)
    agree = [float(a == b) for a, b in zip(people, judge)]
    accuracy = sum(agree) / n if n else None
    acc_low, acc_high = percentile_ci(agree, samples=samples, confidence=confidence, seed=seed)
    kappa = cohen_kappa(people, judge)
    k_low, k_high = kappa_ci(people, judge, samples=samples, confidence=confidence, seed=seed)
    if n < MIN_N:
        flagged = False
    elif kappa is not None:
        flagged = kappa < KAPPA_FLAG
    else:
        flagged = accuracy is not None and accuracy < ACCURACY_FLAG
    return {"n": n, "accuracy": accuracy, "accuracy_ci_low": acc_low, "accuracy_ci_high": acc_high,
            "kappa": kappa, "kappa_ci_low": k_low, "kappa_ci_high": k_high,
            "both_good": sum(a and b for a, b in zip(people, judge)),
            "both_bad": sum(not a and not b for a, b in zip(people, judge)),
            "people_only": sum(a and not b for a, b in zip(people, judge)),
            "judge_only": sum(b and not a for a, b in zip(people, judge)),
            "flagged": flagged, "min_n": MIN_N, "kappa_flag": KAPPA_FLAG, "accuracy_flag": ACCURACY_FLAG}
