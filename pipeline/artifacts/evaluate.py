"""``round-N/evaluate``: the scores of the round's answers (``scores.jsonl``), their summaries and
the verdict (``metrics.json``), and the readers of both."""

from __future__ import annotations

import json

from ..config import Config
from ..errors import DuoError
from ..records import read_jsonl
from ..store import BASELINE_ROUND, Store, artifact_name
from .base import SPEND_CAP, Artifact, service_run_keys

JUDGE_METRICS = ("similarity", "precision")  # the scores a judge gives each answer (columns of scores.jsonl)


def previous_round(store: Store, round_no: int) -> int | None:
    """The last evaluated round before ``round_no`` (round 0, the baseline, counts); None for round 0."""
    return next((k for k in range(round_no - 1, -1, -1) if store.exists(artifact_name("evaluate", k))), None)


def judged(cfg: Config) -> bool:
    """True when a service LLM judges (a judge is configured and a judge metric is asked for)."""
    return bool(cfg.service.judges) and any(m in cfg.evaluate.metrics for m in (*JUDGE_METRICS, "win_rate"))


def _parents(cfg: Config, store: Store, round_no: int) -> list[str]:
    answers = artifact_name("infer", round_no)
    if not store.exists(answers):
        raise store.missing(answers, f"duo evaluate (round {round_no})")
    compared = sorted({BASELINE_ROUND, previous_round(store, round_no)} - {None})
    return [answers] + [artifact_name("evaluate", k) for k in compared
                        if k < round_no and store.exists(artifact_name("evaluate", k))]


def _files(cfg: Config) -> list:
    """The judge prompts and schemas, when a judge runs."""
    from ..prompts import find_schema, find_template

    if not judged(cfg):
        return []
    ev = cfg.evaluate
    files = [find_template(cfg, ev.prompt), find_schema(cfg, ev.schema)]
    if ev.pairwise:
        files += [find_template(cfg, ev.pairwise_prompt), find_schema(cfg, ev.pairwise_schema)]
    return files


ARTIFACT = Artifact(
    "evaluate",
    # service.synthesize: round 0 asks it once more for each test prompt (evaluate.ceiling)
    reads=("evaluate", "service.judge", "service.synthesize", "privacy"),
    unhashed=(*service_run_keys("judge"), *service_run_keys("synthesize"), *SPEND_CAP),
    later=("evaluate.ceiling", "task.kind", "task.labels", "task.schema"),  # task.*: structured tasks
    files=_files,
    parents=_parents,
)


def read_metrics(store: Store, round_no: int, needed_by: str = "duo decide") -> dict:
    """Round ``round_no``'s ``metrics.json``; ArtifactMissing / DuoError when absent or unreadable."""
    name = artifact_name("evaluate", round_no)
    if not store.exists(name):
        raise store.missing(name, f"{needed_by} (round {round_no})")
    path = store.open(name) / "metrics.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DuoError(f"{path}: cannot read the evaluation metrics ({exc})") from None
    if not isinstance(data, dict) or data.get("verdict") not in ("pass", "fail"):
        raise DuoError(f"{path}: 'verdict' must be \"pass\" or \"fail\"")
    return data


def read_scores(store: Store, round_no: int) -> list[dict] | None:
    """Round ``round_no``'s ``scores.jsonl`` rows, or None when that round was not evaluated."""
    name = artifact_name("evaluate", round_no)
    if not store.exists(name):
        return None
    path = store.open(name) / "scores.jsonl"
    return read_jsonl(path) if path.is_file() else None


def read_ceiling(store: Store) -> list[dict] | None:
    """The scored second answers of the service to the test prompts (round 0's ``ceiling.jsonl``), or
    None when round 0 was evaluated without a ceiling (or not at all)."""
    name = artifact_name("evaluate", BASELINE_ROUND)
    if not store.exists(name):
        return None
    path = store.open(name) / "ceiling.jsonl"
    return read_jsonl(path) or None if path.is_file() else None


def verdict(store: Store, round_no: int, needed_by: str) -> str | None:
    """Round ``round_no``'s verdict: from the evaluate manifest (no download), else its
    metrics.json; None when the round was not evaluated."""
    name = artifact_name("evaluate", round_no)
    if not store.exists(name):
        return None
    recorded = (store.manifest(name).extra or {}).get("verdict")
    return recorded or read_metrics(store, round_no, needed_by)["verdict"]
