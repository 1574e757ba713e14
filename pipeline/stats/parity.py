"""Where the student stands against the service's own consistency (the ceiling): the student's mean
as a share of the mean the service's second answer scores against its logged one, per metric, with a
paired bootstrap CI over prompts, and the same share per category (means only: a category holds a
few prompts). Pure numpy; ``evidence.build`` writes it into ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from .bootstrap import resample_means
from .paired import _r, cluster_means


def share(student: Mapping[Hashable, float | None], service: Mapping[Hashable, float | None], *,
          samples: int = 10000, confidence: float = 0.95, seed: int = 0) -> dict:
    """The student's mean over the service's mean, on the prompts both scored (paired).

    Args:
        student, service: ``{prompt_id: per-prompt mean}`` (``None``: unscored).

    Returns:
        ``{"share", "ci_low", "ci_high", "n", "student", "service"}``: ``share`` = mean(student) /
        mean(service); the CI is the percentile bootstrap of that ratio resampling prompts (the same
        prompts on both sides). ``share`` None when the service's mean is not above 0; CI None under 2
        prompts. Rounded to 6 places.
    """
    import numpy as np

    common = sorted((k for k, v in student.items() if v is not None and service.get(k) is not None), key=str)
    a = np.array([float(student[k]) for k in common])
    b = np.array([float(service[k]) for k in common])
    n = len(common)
    out = {"share": None, "ci_low": None, "ci_high": None, "n": n,
           "student": _r(float(a.mean())) if n else None, "service": _r(float(b.mean())) if n else None}
    if not n or b.mean() <= 0:
        return out
    out["share"] = _r(float(a.mean() / b.mean()))
    if n < 2:
        return out
    # the same seed and size draw the same resamples on both sides: a paired bootstrap of the ratio
    den = resample_means(b, samples=samples, seed=seed)
    num = resample_means(a, samples=samples, seed=seed)
    ratios = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(ratios, [alpha, 1.0 - alpha])
    out.update(ci_low=_r(float(low)), ci_high=_r(float(high)))
    return out


def shares(rows: Sequence[Mapping], service: Sequence[Mapping] | None, metrics: Sequence[str], *,
           samples: int, confidence: float) -> dict:
    """metric -> ``share`` of this round's ``scores.jsonl`` rows against the ceiling's rows."""
    if not service:
        return {}
    out = {}
    for m in metrics:
        a, b = per_prompt(rows, m), per_prompt(service, m)
        if a and b:
            out[m] = share(a, b, samples=samples, confidence=confidence)
    return out


def category_shares(rows: Sequence[Mapping], service: Sequence[Mapping] | None,
                    metrics: Sequence[str]) -> dict:
    """category -> metric -> ``{"student", "service", "share", "n"}`` (means over the category's prompts
    scored on both sides; no CI)."""
    if not service:
        return {}
    cats = {str(r.get("id")): "none" if r.get("category") is None else str(r.get("category")) for r in rows}
    out: dict = {}
    for m in metrics:
        a, b = per_prompt(rows, m), per_prompt(service, m)
        for cat in sorted(set(cats.values())):
            keys = [k for k, c in cats.items() if c == cat and a.get(k) is not None and b.get(k) is not None]
            if not keys:
                continue
            sa, sb = sum(a[k] for k in keys) / len(keys), sum(b[k] for k in keys) / len(keys)
            out.setdefault(cat, {})[m] = {"student": _r(sa), "service": _r(sb), "n": len(keys),
                                          "share": _r(sa / sb) if sb > 0 else None}
    return out


def per_prompt(rows: Sequence[Mapping], metric: str) -> dict:
    """prompt id -> mean of ``scores[metric]`` over that prompt's scored rows (``scores.jsonl`` rows)."""
    values = [(r.get("scores") or {}).get(metric) for r in rows]
    return cluster_means(values, [str(r.get("id")) for r in rows])
