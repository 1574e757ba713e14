"""Every judge a round's evaluation runs, turned into per-answer scores: the LlamaDuo judge (one, or
a panel of several whose scores are averaged and whose agreement is reported) and the pairwise judge
against the service's answer (metric ``win_rate``). The judges themselves are in ``judging*.py``;
``evaluate`` calls :func:`score_with_judges`.
"""

from __future__ import annotations

from pathlib import Path

from ..artifacts.evaluate import JUDGE_METRICS
from ..config import Config
from ..manifest import add_usage, zero_usage
from ..prices import check_prices
from ..store import Store

STAGE = "evaluate"


def judges(cfg: Config) -> list:
    """The judge services in force (several make a panel); none when no judge metric is asked for."""
    if not any(m in cfg.evaluate.metrics for m in (*JUDGE_METRICS, "win_rate")):
        return []
    return list(cfg.service.judges)



def _avg(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _panel_summary(outcome) -> dict:
    """What metrics.json records about a panel of several judges."""
    means = {label: {m: _avg([v for v in vals if v is not None]) for m, vals in scores.items()}
             for label, scores in outcome.per_judge.items()}
    return {"judges": outcome.labels, "per_judge": means, "agreement": outcome.agreement}


def score_with_judges(cfg: Config, store: Store, round_no: int, rows: list[dict], name: str, *,
                      already: float = 0.0, carry: bool = True) -> dict:
    """Judge every answer (when a judge is configured): per-metric scores and what the manifest records.

    One judge scores as in LlamaDuo; several make a panel (scores averaged over judges, agreement reported);
    ``evaluate.pairwise`` adds the pairwise verdicts against the service's answer (metric ``win_rate``).
    ``already``/``carry``: what this run spent before the judges, and whether their usage carries the
    replaced artifact's cost (``judging.start_spend``)."""
    found = {"on": False, "verdicts": {}, "failures": [], "usage": zero_usage(), "unsent": 0, "model": None,
             "scores": {}, "judges": 0}
    services = judges(cfg)
    if not services:
        return found
    check_prices(cfg)  # a paid judge with no known price refuses before anything is sent
    from ..llm.journal.sync import open_journal
    from .absolute import judge_absolute
    from .panel import judge_labels, judge_panel

    ev, journal = cfg.evaluate, open_journal(store, cfg, STAGE, round_no)
    labels = judge_labels(services)
    found.update(on=True, judges=len(services), model=", ".join(labels))
    metrics = [m for m in ev.metrics if m in JUDGE_METRICS]
    if metrics and len(services) == 1:
        o = judge_absolute(cfg, store, services[0], rows, journal=journal, artifact_name=name,
                           desc=f"judge r{round_no}", already=already, carry=carry)
        found["scores"] = o.scores([r["_key"] for r in rows], metrics)
    elif metrics:
        o = judge_panel(cfg, store, services, rows, journal=journal, artifact_name=name, metrics=metrics,
                        desc=f"judge r{round_no}", already=already, carry=carry)
        found["scores"] = {m: o.panel[m] for m in metrics}
        found["panel"] = _panel_summary(o)
    if metrics:
        found.update(verdicts=o.verdicts if len(services) == 1 else _merged(o, rows), failures=o.failures,
                     usage=o.usage, unsent=o.unsent)
    if ev.pairwise or "win_rate" in ev.metrics:
        _pairwise(cfg, store, services[0], rows, name, journal, found, already, carry)
    return found


def _merged(panel, rows: list[dict]) -> dict:
    """Every judge's verdicts of each answer, each tagged with its judge."""
    return {r["_key"]: [{**v, "judge": label} for label, o in panel.outcomes.items()
                        for v in o.verdicts.get(r["_key"], [])] for r in rows}


def _pairwise(cfg: Config, store: Store, svc, rows: list[dict], name: str, journal: Path,
              found: dict, already: float, carry: bool) -> None:
    from .pairwise import judge_pairwise

    ev = cfg.evaluate
    before = found["usage"]
    o = judge_pairwise(cfg, store, svc, rows, journal=journal.with_name(journal.stem + "-pairwise.jsonl"),
                       artifact_name=name, template=ev.pairwise_prompt, schema=ev.pairwise_schema,
                       desc="pairwise judge", already=already + float(before.get("new_cost_usd") or 0.0),
                       carry=carry and "carried_cost_usd" not in before)
    found["pairwise"] = {k: v["pairwise"] for k, v in o.rows.items()}
    found["scores"]["win_rate"] = [o.rows.get(r["_key"], {}).get("win") for r in rows]
    found["failures"] = found["failures"] + o.failures
    found["unsent"] += o.unsent
    found["usage"] = add_usage(found["usage"], o.usage)


