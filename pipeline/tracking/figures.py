"""What a tracked round holds, read from the round's artifacts (no tracker library here).

:func:`round_record` turns a round's stored artifacts into the four things every tracker takes:

- **params** (fixed for the round): the task, student and its revision, the judge and the synthesizer,
  the fine-tuning recipe (``lora.*`` and ``sft.*``, peft's and TRL's names as trained), the data counts
  (``data.*``) and each artifact's fingerprint (``fingerprint.<stage>``);
- **metrics**: each metric's mean, CI bounds and pass rate (``<metric>.mean`` ...), the paired
  differences with their CIs (``vs_baseline.<metric>.diff`` ..., ``vs_previous``, ``vs_service``), the
  share of the service's score (``share_of_ceiling.<metric>``), the cost (``cost.round_usd``,
  ``cost.total_usd``), each stage's seconds (``seconds.<stage>``) and the training's first and last loss;
- **tags**: ``duo.task``, ``duo.round`` (which find the run again), ``duo.decision``, ``duo.verdict``,
  ``duo.reason``, the commits of the adapter and the data where the store has them, the code's git sha;
- **files**: the report folder (report.md, metrics.json, charts), decision.json, train_log.jsonl.

A round whose synthesis kept no rows has no evaluation: its record holds what exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config
from ..store import Store, artifact_name

ROUND_STAGES = ("synthesize", "finetune", "infer", "evaluate", "report", "decide")
PAIRED = ("vs_baseline", "vs_previous", "vs_service")
NOT_RECIPE = ("report_to", "output_dir", "logging_dir")  # how the trainer ran, not what it trained
MAX_TAG = 500  # a long decision reason is cut; the full one is in decision.json


@dataclass
class RoundRecord:
    """One round as a tracker run: params, metrics (name -> float), tags, files to attach (path -> folder
    inside the run's artifacts)."""

    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)


def run_tags(cfg: Config, round_no: int) -> dict:
    """The tags that identify a round's run (a rerun finds the same run by them)."""
    return {"duo.task": cfg.task.name, "duo.round": str(round_no)}


def run_name(cfg: Config, round_no: int) -> str:
    return f"{cfg.task.name} round {round_no}"


def _manifest(store: Store, name: str):
    try:
        return store.manifest(name) if store.exists(name) else None
    except (OSError, ValueError):
        return None


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _put(out: dict, name: str, value) -> None:
    if (number := _number(value)) is not None:
        out[name] = number


def evaluation_metrics(ev: dict) -> dict:
    """The figures of an evaluation's ``metrics.json`` as flat metric names."""
    out: dict = {}
    for metric, stats in (ev.get("metrics") or {}).items():
        for key in ("mean", "ci_low", "ci_high", "pass_rate"):
            _put(out, f"{metric}.{key}", stats.get(key))
    for vs in PAIRED:
        for metric, diff in (ev.get(vs) or {}).items():
            for key in ("diff", "ci_low", "ci_high", "p_value"):
                _put(out, f"{vs}.{metric}.{key}", (diff or {}).get(key))
    for metric, share in (ev.get("share_of_ceiling") or {}).items():
        _put(out, f"share_of_ceiling.{metric}", (share or {}).get("share"))
    _put(out, "n", ev.get("n"))
    _put(out, "judge_failures", ev.get("judge_failures"))
    cost = ev.get("cost") or {}
    for key in ("round_usd", "total_usd"):
        _put(out, f"cost.{key}", cost.get(key))
    return out


def _params(cfg: Config, store: Store, round_no: int, ev: dict) -> dict:
    params = {"task": cfg.task.name, "student": cfg.student.model,
              "student_revision": cfg.student.revision or "",
              "judge": ev.get("judge_model") or ev.get("judge") or "offline metrics",
              "judge_repeats": ev.get("judge_repeats"),
              "synthesizer": (f"{cfg.service.synthesize.provider}:{cfg.service.synthesize.model}"
                              if cfg.service.synthesize else "none"),
              "decision_metric": ev.get("decision_metric"), "confidence": ev.get("confidence")}
    if (tuned := _manifest(store, artifact_name("finetune", round_no))) is not None:
        for section in ("lora", "sft"):
            for key, value in ((tuned.extra or {}).get(section) or {}).items():
                if key not in NOT_RECIPE:
                    params[f"{section}.{key}"] = value
        for key in ("train_rows", "synthetic_rows", "prepare_rows", "rows_truncated",
                    "rows_dropped_too_long", "max_length", "steps"):
            params[f"data.{key}"] = (tuned.counts or {}).get(key)
    if (prep := _manifest(store, "prepare")) is not None:
        params["data.test_rows"] = (prep.counts or {}).get("test")
        params["fingerprint.prepare"] = prep.fingerprint
    if (synth := _manifest(store, artifact_name("synthesize", round_no))) is not None:
        params["data.synthesized_kept"] = (synth.counts or {}).get("kept")
        params["data.synthesized_requested"] = (synth.counts or {}).get("requested")
    for stage in ROUND_STAGES:
        if (m := _manifest(store, artifact_name(stage, round_no))) is not None:
            params[f"fingerprint.{stage}"] = m.fingerprint
    return {k: ("" if v is None else v) for k, v in params.items()}


def _commit(store: Store, name: str) -> str | None:
    if not store.exists(name):
        return None
    try:
        return store.describe(name).get("commit")
    except (OSError, ValueError):
        return None


def _tags(cfg: Config, store: Store, round_no: int, ev: dict, decision: dict) -> dict:
    tags = {**run_tags(cfg, round_no), "mlflow.runName": run_name(cfg, round_no)}
    if decision:
        tags["duo.decision"] = str(decision.get("decision"))
        tags["duo.reason"] = str(decision.get("reason") or "")[:MAX_TAG]
    if ev.get("verdict"):
        tags["duo.verdict"] = str(ev["verdict"])
    adapter = ev.get("adapter") or {}
    adapter_commit = adapter.get("commit") or _commit(store, artifact_name("finetune", round_no))
    if adapter_commit:
        tags["duo.adapter_commit"] = adapter_commit
    if adapter.get("repo"):
        tags["duo.adapter"] = str(adapter["repo"])
    for stage in ("synthesize", "evaluate"):
        if commit := _commit(store, artifact_name(stage, round_no)):
            tags[f"duo.data_commit.{stage}"] = commit
    shas = [m.git_sha for s in ROUND_STAGES if (m := _manifest(store, artifact_name(s, round_no)))]
    if shas and shas[-1]:
        tags["duo.git_sha"] = shas[-1]
    return tags


def _files(store: Store, round_no: int) -> dict:
    files: dict = {}
    if store.exists(name := artifact_name("report", round_no)):
        for path in sorted(store.open(name).iterdir()):
            if path.is_file() and path.name != "manifest.json":
                files[path] = "report"
    for stage, file in (("decide", "decision.json"), ("finetune", "train_log.jsonl")):
        if store.exists(name := artifact_name(stage, round_no)) and (store.open(name) / file).is_file():
            files[store.open(name) / file] = stage
    return files


def round_record(cfg: Config, store: Store, round_no: int) -> RoundRecord:
    """Round ``round_no`` as a tracker run, from the artifacts the store holds (the report's
    metrics.json first: the evaluation with its cost, data and decision as the report showed them)."""
    report = artifact_name("report", round_no)
    ev = _json(store.open(report) / "metrics.json") if store.exists(report) else {}
    if not ev and store.exists(name := artifact_name("evaluate", round_no)):
        ev = _json(store.open(name) / "metrics.json")
    decision = {}
    if store.exists(name := artifact_name("decide", round_no)):
        decision = _json(store.open(name) / "decision.json")
    decision = decision or ev.get("decision") or {}
    metrics = evaluation_metrics(ev)
    for stage in ROUND_STAGES:
        if (m := _manifest(store, artifact_name(stage, round_no))) is not None:
            _put(metrics, f"seconds.{stage}", (m.timings or {}).get("seconds"))
    if (tuned := _manifest(store, artifact_name("finetune", round_no))) is not None:
        for key in ("first_loss", "last_loss", "train_runtime_s", "peak_rss_mb"):
            _put(metrics, f"finetune.{key}", (tuned.extra or {}).get(key))
    _put(metrics, "spend_usd", decision.get("spend_usd"))
    return RoundRecord(params=_params(cfg, store, round_no, ev), metrics=metrics,
                       tags=_tags(cfg, store, round_no, ev, decision), files=_files(store, round_no))
