"""What the report pins: the adapter and data artifacts by commit (Hub store) or by path and
fingerprint (local store), the judge that scored the round, and how many of the student's answers
were empty or cut short.

A branch or tag name is for people (``round-2`` is deleted and made again by a rerun); the commit
sha is what a link and a ``from_pretrained(revision=...)`` pin to.
"""

from __future__ import annotations

from pathlib import Path

from ..artifacts import ARTIFACTS, file_digest
from ..config import Config
from ..errors import DuoError
from ..records import iter_jsonl
from ..store import Store, artifact_name

DATA_STAGES = ("prepare", "synthesize", "infer", "evaluate")
TRUNCATED = ("length", "max_tokens")  # finish reasons of an answer cut at the token limit


def pinned(store: Store, name: str) -> dict | None:
    """Where artifact ``name`` is, pinned: ``commit`` and ``url`` (the repo tree at that commit)
    plus ``ref`` (the branch for people) in the Hub store; ``path`` and ``fingerprint`` in the local
    store. None when absent."""
    if not store.exists(name):
        return None
    info = store.describe(name)
    out = {"name": name, "kind": store.kind, "fingerprint": store.manifest(name).fingerprint}
    if info.get("commit"):
        return {**out, "repo": info["repo_id"], "repo_type": info["repo_type"], "commit": info["commit"],
                "url": info["commit_url"], "blob_url": info.get("blob_url"), "ref": info.get("revision"),
                "repo_url": info.get("repo_url")}
    return {**out, "path": str(store.local_path(name)), "commit": None, "url": None}


def lineage(store: Store, round_no: int) -> dict:
    """The round's artifacts, pinned: ``adapter`` (None for round 0 or without a finetune artifact)
    and ``data`` (prepare and this round's synthesize, infer and evaluate, those that exist)."""
    names = [artifact_name(s, None if s == "prepare" else round_no) for s in DATA_STAGES]
    data = [p for p in (pinned(store, n) for n in names) if p is not None]
    adapter = pinned(store, artifact_name("finetune", round_no)) if round_no > 0 else None
    return {"adapter": adapter, "data": data, "hub": any(p.get("commit") for p in data + [adapter] if p)}


def _shown(cfg: Config, path: Path) -> str:
    """A prompt file as a reader finds it: relative to the config's folder or the
    repository, else its name."""
    for root in (cfg.source_path.parent if cfg.source_path else None, Path(__file__).resolve().parents[2]):
        if root is not None:
            try:
                return path.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                continue
    return path.name


def judging(cfg: Config, store: Store, ev: dict, round_no: int) -> dict:
    """Who judged the round: ``models``, ``repeats``, the judge prompt's ``prompt`` file and
    ``prompt_hash`` (sha256, first 16 hex digits), and ``prompt_changed`` when the scores are
    stale: what evaluate reads now (the prompt among it) no longer gives the evaluate
    artifact's fingerprint."""
    panel = (ev.get("panel") or {}).get("judges")
    models = list(panel) if panel else [ev["judge_model"]] if ev.get("judge_model") else []
    out = {"models": models, "repeats": ev.get("judge_repeats"), "prompt": None, "prompt_hash": None,
           "prompt_changed": False}
    if ev.get("judge") != "llm":
        return out
    from ..prompts import find_template

    try:
        path = find_template(cfg, cfg.evaluate.prompt)
        out.update(prompt=_shown(cfg, path), prompt_hash=file_digest(path))
        name = artifact_name("evaluate", round_no)
        made = store.manifest(name).fingerprint
        if made is not None:  # else it stays False
            inputs = ARTIFACTS["evaluate"].inputs(cfg, store, round_no)
            out["prompt_changed"] = inputs.fingerprint != made
    except DuoError:
        pass  # the prompt or the answers are gone: the hash stays as found, or unknown
    return out


def answer_counts(store: Store, round_no: int) -> dict | None:
    """The student's answers this round: ``total``, ``empty`` and ``truncated`` (cut at
    ``infer.max_new_tokens``; None when the answers do not record why generation stopped)."""
    name = artifact_name("infer", round_no)
    if not store.exists(name):
        return None
    m = store.manifest(name)
    c = m.counts or {}
    total, empty, truncated, known = 0, 0, 0, False
    try:
        for _, row in iter_jsonl(store.open(name) / "answers.jsonl"):
            total += 1
            empty += not (row.get("answer") or "").strip()
            reason = row.get("finish_reason")
            known = known or reason is not None or "truncated" in row
            truncated += bool(row.get("truncated")) or reason in TRUNCATED
    except (DuoError, OSError):
        total, empty = int(c.get("answers") or 0), int(c.get("empty_answers") or 0)
    if c.get("truncated_answers") is not None:
        truncated, known = int(c["truncated_answers"]), True
    return {"total": total, "empty": empty, "truncated": truncated if known else None,
            "max_new_tokens": ((m.extra or {}).get("params") or {}).get("max_new_tokens")}
