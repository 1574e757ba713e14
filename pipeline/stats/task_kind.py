"""A round's task kind (``task.kind``, or what ``prepare`` detected) and what follows from it at ``evaluate``:
the kind's per-prompt scores, the pass rule when the configured one is left at its (prose) default, and
the label summary (per-class accuracy, macro-F1, confusion matrix) of a label task."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..config import Config
from ..config_types import RuleCondition
from ..data.structured import detect_kind, task_labels, task_schema
from ..store import Store
from .structured_metrics import DEFAULT_RULES, KIND_METRICS, THRESHOLDS, label_summary, structured_scores


def prepared(store: Store) -> dict:
    """The ``prepare`` manifest's ``extra`` (``kind``, ``kind_reason``, ``labels``), {} when none."""
    return (store.manifest("prepare").extra or {}) if store.exists("prepare") else {}


def resolve_kind(cfg: Config, detected: str | None, reason: str | None = None) -> tuple[str, str]:
    """(kind, why): ``task.kind`` when set, else ``task.labels`` (label), else what ``prepare`` detected."""
    if cfg.task.kind != "auto":
        return cfg.task.kind, "set in task.kind"
    if cfg.task.labels and detected in (None, "text"):
        return "label", "task.labels is set"
    return detected or "text", reason or "detected by prepare"


def prepare_kind(rows: list[dict], train: list[dict]) -> dict:
    """What ``prepare`` records of the task's kind (manifest ``extra``), from the rows alone (so a later
    ``task.kind`` never changes the fixed split): ``kind``, ``kind_reason`` and, for a label task, ``labels``
    (the distinct train targets)."""
    kind, why = detect_kind(rows)
    out = {"kind": kind, "kind_reason": why}
    if kind == "label":
        out["labels"] = task_labels(train)
    return out


def round_kind(cfg: Config, store: Store) -> tuple[str, str]:
    extra = prepared(store)
    return resolve_kind(cfg, extra.get("kind"), extra.get("kind_reason"))


def labels_of(cfg: Config, store: Store) -> list[str] | None:
    return list(cfg.task.labels) if cfg.task.labels else prepared(store).get("labels")


def rule_for(cfg: Config, kind: str, conditions: list, key: str) -> list:
    """The kind's default rule when ``evaluate.<key>`` is left at its schema default, else ``conditions``."""
    from ..artifacts.base import schema_defaults

    if kind not in DEFAULT_RULES:
        return conditions
    default = schema_defaults()["evaluate"][key]
    written = [{k: v for k, v in dataclasses.asdict(c).items() if v is not None} for c in conditions]
    if written != [{"stat": "mean", **d} for d in (default or [])]:
        return conditions
    return [RuleCondition(metric=d["metric"], stat=d["stat"], min=d["min"]) for d in DEFAULT_RULES[kind]]


def with_thresholds(ev):
    """The ``evaluate`` section with the structured metrics' per-sample thresholds (1: fully right) added."""
    return dataclasses.replace(ev, thresholds={**THRESHOLDS, **ev.thresholds})


def kind_scores(cfg: Config, store: Store, kind: str, rows: Sequence[dict]) -> dict[str, list]:
    """The per-prompt scores of ``kind``'s metrics for ``rows`` (answers with ``reference``)."""
    if not KIND_METRICS.get(kind):
        return {}
    schema = task_schema(cfg, list(rows)) if cfg.task.schema else None
    return structured_scores(kind, rows, schema=schema, labels=labels_of(cfg, store))


def kind_report(cfg: Config, store: Store, kind: str, why: str, rows: Sequence[dict]) -> dict:
    """What ``metrics.json`` says of the kind: ``task_kind``, ``task_kind_reason`` and, for a label task,
    ``labels`` (``label_summary`` of the first sample of each prompt)."""
    out: dict = {"task_kind": kind, "task_kind_reason": why}
    if kind == "label":
        first = [r for r in rows if not r.get("sample")]
        out["labels"] = label_summary([r["answer"] for r in first], [r["reference"] for r in first],
                                      labels_of(cfg, store))
    return out


def kind_problems(cfg: Config) -> list[str]:
    """``duo validate``: a pass rule naming metrics of another kind than ``task.kind`` (with ``auto``: of two
    structured kinds at once), or a ``task.schema`` that cannot be read as a JSON Schema."""
    from ..errors import DuoError

    owner = {m: k for k, ms in KIND_METRICS.items() for m in ms}
    kind = cfg.task.kind if cfg.task.kind != "auto" else ("label" if cfg.task.labels else None)
    out = []
    for key in ("pass_rule", "offline_pass_rule"):
        rule = getattr(cfg.evaluate, key) or []
        kinds = {owner[c.metric] for c in rule if c.metric in owner}
        for i, c in enumerate(rule):
            theirs = owner.get(c.metric)
            if theirs is None or (theirs == kind if kind else len(kinds) == 1):
                continue
            said = f"task.kind is {kind}" if kind else f"the rule also names {' and '.join(sorted(kinds))} metrics"
            mine = ", ".join(KIND_METRICS.get(kind or "text", ())) or "none"
            out.append(f"evaluate.{key}[{i}].metric: {c.metric} is a {theirs} metric but {said}; expected "
                       f"metrics of one kind ({kind or 'text'}: {mine}) or the text metrics")
    if cfg.task.schema:
        try:
            task_schema(cfg, [])
        except DuoError as exc:
            out.append(str(exc))
    if cfg.task.schema and cfg.task.kind not in ("auto", "json"):
        out.append(f"task.schema: set, but task.kind is {cfg.task.kind}; expected json (or auto)")
    return out
