"""Where the student stands against the service, for the report: the service's own consistency (its
second answer to each test prompt scored against the logged one, ``metrics.json`` ``ceiling``), the
student's share of it and the paired difference, per metric and per category.

Without a ceiling (no service configured to ask again) the report says what the numbers cannot say:
a metric of similarity to the logged answer has no known "as good as the service" value, only the
judge's pairwise win rate has one (0.5: no preference).
"""

from __future__ import annotations

PARITY = {"win_rate": 0.5}  # the pairwise judge's "as good as the service", with or without a ceiling


def service_gap(ev: dict) -> dict | None:
    """The decision metric against the service: the student's mean, the ceiling's mean and CI, the
    student's share of it (CI) and the paired difference (CI); ``kind`` says which comparison holds
    (``ceiling``, ``parity`` for the pairwise judge, else None: not measured)."""
    metric = ev["decision_metric"]
    mean = (ev["metrics"].get(metric) or {}).get("mean")
    if mean is None:
        return None
    out = {"metric": metric, "student": mean, "base": (ev["baseline"].get(metric) or {}).get("mean"),
           "kind": None, "reference": None}
    top = (ev.get("ceiling") or {}).get(metric)
    if top:
        out.update(kind="ceiling", ceiling=top, share=(ev.get("share_of_ceiling") or {}).get(metric),
                   diff=(ev.get("vs_service") or {}).get(metric), model=(ev.get("ceiling_source") or {})
                   .get("model"))
    elif metric in PARITY:
        out.update(kind="parity", reference=PARITY[metric])
    return out


def parity_rows(ev: dict) -> list[dict]:
    """One row per metric with a ceiling: ``{metric, student, ceiling, share, diff}`` (the dicts of
    ``metrics.json``)."""
    tops = ev.get("ceiling") or {}
    return [{"metric": m, "student": s, "ceiling": tops[m],
             "share": (ev.get("share_of_ceiling") or {}).get(m), "diff": (ev.get("vs_service") or {}).get(m)}
            for m, s in ev["metrics"].items() if m in tops]


def category_parity(ev: dict) -> list[dict]:
    """The decision metric per category: ``{category, student, service, share, n}``, the categories with
    the lowest share first (where the student is furthest from the service)."""
    metric = ev["decision_metric"]
    rows = [{"category": cat, **per[metric]} for cat, per in (ev.get("ceiling_by_category") or {}).items()
            if metric in per]
    return sorted(rows, key=lambda r: (r["share"] is None, r["share"] if r["share"] is not None else 0.0))
