"""A judge panel: several judge LLMs score every row with the absolute judge,
and how well they agree.

Each judge (a ``ServiceLLMConfig``) is named ``provider:model`` and keeps its own journal, named
after it. Per row, a judge's score is its mean over repeats; the panel's score is the mean over
the judges that scored the row. Agreement per metric: the mean absolute difference between two
judges' scores of one row (over every pair of judges and every row both scored), and
Krippendorff's alpha (interval metric; 1 = perfect agreement, 0 = no better than chance). A judge
is flagged when its mean absolute difference from the other judges' mean passes
``DISAGREE_THRESHOLD`` points (1-100 scale) on any metric.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts import carried_cost
from ..artifacts.evaluate import JUDGE_METRICS
from ..config import Config, ServiceLLMConfig
from ..store import Store
from .absolute import CutByBudget, JudgeOutcome, run_absolute, start_spend

DISAGREE_THRESHOLD = 15.0  # points on the 1-100 scale


@dataclass
class PanelOutcome(CutByBudget):
    """What a judge panel gave.

    Attributes:
        labels: the judges' labels (``provider:model``, ``#2``... added to
            repeats), in the order given.
        outcomes: label -> that judge's JudgeOutcome (verdicts, failures, usage
            without carried cost, unsent).
        per_judge: label -> {metric: per-row score (mean over repeats; None: unscored)}.
        panel: {metric: per-row mean over the judges that scored the row (None: none did)}.
        agreement: ``{"alpha": {metric: a}, "mean_abs_diff": {metric: d}, "deviation": {label:
            {metric: d}}, "flagged": [labels], "threshold": t}`` (None where fewer than two
            judges scored anything).
        failures: every judge's failure records, each with ``judge``: its label.
        usage: the panel's usage for the manifest (requests and tokens summed;
            ``cost_usd`` with the carried cost).
        unsent: requests not sent because the spend budget would have been passed, over all judges.
    """

    labels: list[str]
    outcomes: dict[str, JudgeOutcome]
    per_judge: dict[str, dict[str, list]]
    panel: dict[str, list]
    agreement: dict
    failures: list[dict]
    usage: dict
    unsent: int = 0


def judge_labels(judges: list[ServiceLLMConfig]) -> list[str]:
    """``provider:model`` per judge; a label seen before gets ``#2``, ``#3``..."""
    labels: list[str] = []
    for svc in judges:
        base = f"{svc.provider}:{svc.model}"
        label, n = base, 1
        while label in labels:
            n += 1
            label = f"{base}#{n}"
        labels.append(label)
    return labels


def judge_journal(journal: Path | str, label: str) -> Path:
    """The journal of judge ``label``: ``<stem>.<label as a file name><suffix>`` beside ``journal``."""
    journal = Path(journal)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-")
    return journal.with_name(f"{journal.stem}.{slug}{journal.suffix or '.jsonl'}")


def judge_panel(cfg: Config, store: Store, judges: list[ServiceLLMConfig], rows: list[dict], *,
                journal: Path | str, artifact_name: str, template: str | None = None,
                schema: str | None = None, repeats: int | None = None, metrics=JUDGE_METRICS,
                threshold: float = DISAGREE_THRESHOLD, desc: str = "judge", already: float = 0.0,
                carry: bool = True) -> PanelOutcome:
    """Score every row with every judge (absolute judge), combine, and measure the judges' agreement.

    The judges share one spend budget, asked one after another: a judge's requests count what the ones before
    it spent. Args as in ``judging.judge_absolute`` (``already``: what this run spent before the panel;
    ``carry``: the panel's usage carries the replaced artifact's cost); ``journal`` is the base name of the
    per-judge journals.
    """
    if not judges:
        raise ValueError("a judge panel needs at least one judge")
    ev = cfg.evaluate
    template, schema = template or ev.prompt, schema or ev.schema
    repeats = ev.judge_repeats if repeats is None else repeats
    labels = judge_labels(judges)
    keys = [row["_key"] for row in rows]
    outcomes: dict[str, JudgeOutcome] = {}
    new_cost = already
    for label, svc in zip(labels, judges):
        # the replaced artifact's cost is counted once, in the panel's usage, not in each judge's
        spend = start_spend(cfg, store, svc, artifact_name, already=new_cost, carry=False)
        outcomes[label] = run_absolute(cfg, svc, rows, spend=spend, journal=judge_journal(journal, label),
                                       template=template, schema_name=schema, repeats=repeats,
                                       desc=f"{desc} {label}")
        new_cost += spend.cost
    per_judge = {label: out.scores(keys, metrics) for label, out in outcomes.items()}
    panel = {m: _nanmean_rows(_matrix(per_judge, m)) for m in metrics}
    failures = [{**f, "judge": label} for label, out in outcomes.items() for f in out.failures]
    agreed = agreement(per_judge, metrics, threshold)
    carried = carried_cost(store, artifact_name) if carry else 0.0
    usage = _panel_usage([o.usage for o in outcomes.values()], carried)
    unsent = sum(o.unsent for o in outcomes.values())
    return PanelOutcome(labels, outcomes, per_judge, panel, agreed, failures, usage, unsent)


# --------------------------------------------------------------------------- agreement (pure numpy)


def _matrix(per_judge: dict[str, dict[str, list]], metric: str) -> np.ndarray:
    """judges x rows, NaN where a judge did not score a row."""
    rows = [[np.nan if s is None else float(s) for s in scores[metric]]
            for scores in per_judge.values()]
    return np.array(rows, dtype=float).reshape(len(per_judge), -1)


def _nanmean_rows(m: np.ndarray) -> list[float | None]:
    out = []
    for col in m.T:
        col = col[~np.isnan(col)]
        out.append(float(col.mean()) if col.size else None)
    return out


def krippendorff_alpha_interval(data) -> float | None:
    """Krippendorff's alpha, interval metric, of a raters x units matrix (NaN or None = missing).

    Only units with two or more values count. None when it is undefined (fewer than two such values, or no
    variation at all among them).
    """
    m = np.array([[np.nan if v is None else v for v in row] for row in data], dtype=float)
    m = m[:, (~np.isnan(m)).sum(axis=0) >= 2]
    values = m[~np.isnan(m)]
    n = values.size
    if n < 2:
        return None
    counts = (~np.isnan(m)).sum(axis=0)
    sums, squares = np.nansum(m, axis=0), np.nansum(m * m, axis=0)
    # within a unit of m_u values: sum over ordered pairs of (v_i - v_j)^2 = 2 (m_u sum v^2 - (sum v)^2)
    observed = np.sum(2 * (counts * squares - sums**2) / (counts - 1)) / n
    expected = 2 * (n * np.sum(values**2) - np.sum(values) ** 2) / (n * (n - 1))
    if expected <= 0:
        return None
    return float(1.0 - observed / expected)


def _mean_abs_diff(m: np.ndarray) -> float | None:
    """Mean |a - b| over every pair of judges and every row both scored."""
    diffs = [np.abs(m[i] - m[j]) for i in range(len(m)) for j in range(i + 1, len(m))]
    diffs = np.concatenate(diffs) if diffs else np.array([])
    diffs = diffs[~np.isnan(diffs)]
    return float(diffs.mean()) if diffs.size else None


def _deviation(m: np.ndarray, i: int) -> float | None:
    """Mean over rows of |judge i's score - the other judges' mean score|."""
    others = np.delete(m, i, axis=0)
    if not others.size:
        return None
    seen = (~np.isnan(others)).sum(axis=0)
    mean = np.divide(np.nansum(others, axis=0), seen, out=np.full(m.shape[1], np.nan), where=seen > 0)
    diff = np.abs(m[i] - mean)
    diff = diff[~np.isnan(diff)]
    return float(diff.mean()) if diff.size else None


def agreement(per_judge: dict[str, dict[str, list]], metrics=JUDGE_METRICS,
              threshold: float = DISAGREE_THRESHOLD) -> dict:
    """Alpha and mean absolute difference per metric, each judge's deviation, and the
    judges that disagree."""
    out: dict = {"alpha": {}, "mean_abs_diff": {}, "deviation": {label: {} for label in per_judge},
                 "flagged": [], "threshold": threshold}
    for metric in metrics:
        m = _matrix(per_judge, metric)
        out["alpha"][metric] = krippendorff_alpha_interval(m)
        out["mean_abs_diff"][metric] = _mean_abs_diff(m)
        for i, label in enumerate(per_judge):
            out["deviation"][label][metric] = _deviation(m, i)
    out["flagged"] = [label for label, devs in out["deviation"].items()
                      if any(d is not None and d > threshold for d in devs.values())]
    return out


def _panel_usage(usages: list[dict], carried: float) -> dict:
    counts = ("requests", "input_tokens", "output_tokens", "cached")
    total = {k: sum(u.get(k) or 0 for u in usages) for k in counts}
    new = sum(float(u.get("new_cost_usd") or 0.0) for u in usages)
    return {**total, "cost_usd": round(carried + new, 8), "new_cost_usd": round(new, 8),
            "carried_cost_usd": round(carried, 8)}
