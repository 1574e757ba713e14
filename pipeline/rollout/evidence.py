"""The canary's quality evidence: on the shadowed prompts of a window, the student's answers against the
service's answers to the same prompts, with the statistics of a round (``duo canary``, ``duo monitor``).

A shadowed prompt is a ``group`` where the service and the student both answered (one served, the other its
silent copy). Its row: ``_key`` (the group), ``instruction``/``system``/``messages`` (the question as asked:
the service's logged request read by ``chat_logs``), ``reference`` (the service's answer) and ``answer``
(the student's). Measured:

- the offline metrics of ``evaluate.metrics`` (rougeL, bleu, embedding: ``stats.metrics``) of the student's
  answer against the service's, each a prompt-clustered mean and CI (``stats.paired.clustered_ci``);
- with a judge (``service.judge`` and ``evaluate.pairwise`` or ``win_rate`` among the metrics): the pairwise
  win rate with the position swap (``judging.pairwise``) and its clustered CI (``stats.paired.win_rate``).

The decision reads one paired per-prompt difference (``stats.paired.paired_diff``, bootstrap over prompts):
the judge's ``win - 0.5`` (0 = as good as the service), else the decision metric's score over its
``evaluate.thresholds`` value, minus 1 (0 = exactly at the threshold a round passes a sample at).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..config import Config
from ..data.chat_logs import chat_record
from ..data.traffic import Call, Traffic, read_calls
from ..stats.metrics import offline_scores
from ..stats.paired import change_word, clustered_ci, paired_diff, win_rate
from ..store import Store
from .gateway import traffic_folder

OFFLINE = ("rougeL", "bleu", "embedding")


@dataclass(frozen=True)
class Window:
    """The calls captured in ``folder`` in the ``hours`` before ``until`` (from ``since``)."""

    folder: Path
    since: datetime
    until: datetime
    hours: float
    found: Traffic

    @property
    def stamp(self) -> str:
        """The artifact name's stamp of the window's end, ``<YYYYmmddTHHMMSS>Z``."""
        return f"{self.until.strftime('%Y%m%dT%H%M%S')}Z"


def read_window(cfg: Config, traffic: Path | None = None, window_hours: float | None = None,
                now: datetime | None = None) -> Window:
    """The last ``window_hours`` (default ``rollout.window_hours``) up to ``now`` of the traffic captured in
    ``traffic`` (default ``rollout.traffic``, else ``<local store>/traffic``), for canary and monitor."""
    until = now or datetime.now(timezone.utc)
    hours = float(window_hours or cfg.rollout.window_hours)
    folder = Path(traffic) if traffic else traffic_folder(cfg)
    since = until - timedelta(hours=hours)
    return Window(folder, since, until, hours, read_calls(folder, since, until))


def shadow_rows(groups: dict[str, list[Call]]) -> list[dict]:
    """One row per group answered by both the service and the student (the first answer of each)."""
    rows = []
    for key, calls in sorted(groups.items()):
        service = next((c for c in calls if c.deployment == "service" and c.ok), None)
        student = next((c for c in calls if c.deployment == "student" and c.ok), None)
        if service is None or student is None:
            continue
        record, _ = chat_record({"request": service.request, "response": service.response})
        if record is None:
            continue
        rows.append({"_key": key, "instruction": record["instruction"], "system": record["system"],
                     "messages": record["messages"], "category": None, "reference": service.answer,
                     "answer": student.answer, "ts": service.ts.isoformat()})
    return rows


def judged(cfg: Config) -> bool:
    """True when the canary asks the pairwise judge."""
    ev = cfg.evaluate
    return cfg.service.judge is not None and (ev.pairwise or "win_rate" in ev.metrics)


def offline_metrics(cfg: Config) -> list[str]:
    return [m for m in cfg.evaluate.metrics if m in OFFLINE] or ["rougeL"]


def decision_metric(cfg: Config) -> str:
    if judged(cfg):
        return "win_rate"
    chosen = cfg.evaluate.decision_metric
    return chosen if chosen in offline_metrics(cfg) else offline_metrics(cfg)[0]


def compare(cfg: Config, store: Store, rows: list[dict], *, artifact: str) -> dict:
    """Per-row scores (written into ``rows``), the summaries and the decision's paired difference."""
    ev = cfg.evaluate
    stats = {"samples": ev.bootstrap_samples, "confidence": ev.confidence}
    keys = [r["_key"] for r in rows]
    out: dict = {"prompts": len(rows), "metrics": {}, "judge": None, "usage": {}}
    if not rows:
        out.update(decision_metric=decision_metric(cfg), diff=None, change=None)
        return out
    scores = offline_scores(offline_metrics(cfg), [r["answer"] for r in rows], [r["reference"] for r in rows],
                            embedding_model=ev.embedding_model)
    for metric, values in scores.items():
        for row, v in zip(rows, values):
            row.setdefault("scores", {})[metric] = v
        out["metrics"][metric] = clustered_ci(values, keys, **stats)
    if judged(cfg):
        from ..judging.pairwise import judge_pairwise

        journal = Path(store.journal_dir) / "canary-pairwise.jsonl"
        o = judge_pairwise(cfg, store, cfg.service.judge, rows, journal=journal, artifact_name=artifact,
                           template=ev.pairwise_prompt, schema=ev.pairwise_schema,
                           desc="canary: pairwise judge")
        for row in rows:
            row["win"] = o.rows.get(row["_key"], {}).get("win")
            row["pairwise"] = o.rows.get(row["_key"], {}).get("pairwise")
        out["judge"] = {**win_rate({r["_key"]: r["win"] for r in rows}, **stats),
                        "model": cfg.service.judge.model,
                        "failures": len(o.failures), "unsent": o.unsent}
        out["usage"] = o.usage
    metric = decision_metric(cfg)
    if metric == "win_rate":
        a = {r["_key"]: r.get("win") for r in rows}
        b = {k: 0.5 for k in a}
    else:
        threshold = float(ev.thresholds.get(metric) or 1.0)
        a = {r["_key"]: r["scores"][metric] / threshold for r in rows}
        b = {k: 1.0 for k in a}
        out["threshold"] = threshold
    d = paired_diff(a, b, **stats)
    out.update(decision_metric=metric, diff=d, change=change_word(d) if d["n"] else None)
    return out
