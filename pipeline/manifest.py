"""The manifest every artifact carries: what made it, from what, at what cost."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .errors import DuoError

MANIFEST = "manifest.json"
USAGE_KEYS = ("requests", "input_tokens", "output_tokens", "cost_usd", "cached")


def zero_usage() -> dict:
    """A stage's service-LLM usage when it made no request."""
    return {"requests": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "cached": 0}


def add_usage(a: dict, b: dict) -> dict:
    """Two usages summed key by key (requests, tokens, costs)."""
    return {k: (a.get(k) or 0) + (b.get(k) or 0) for k in set(a) | set(b)}


def git_sha() -> str | None:
    """The current commit (GITHUB_SHA in Actions), or None outside a git checkout."""
    if os.environ.get("GITHUB_SHA"):
        return os.environ["GITHUB_SHA"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Manifest:
    """``manifest.json`` of one artifact.

    ``usage`` holds ``input_tokens``, ``output_tokens``, ``requests`` and ``cost_usd`` summed over
    the stage's service-LLM calls; ``parents`` names the input artifacts with their config hashes.
    """

    stage: str
    artifact: str
    config_hash: str
    round: int | None = None
    # Hash of everything the artifact was made from (pipeline.artifacts.StageInputs).
    fingerprint: str | None = None
    parents: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    usage: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    git_sha: str | None = None
    files: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    _t0: float = field(default=0.0, repr=False, compare=False)

    @classmethod
    def start(cls, stage: str, artifact: str, config_hash: str, round_no: int | None = None,
              parents: list[Manifest] | None = None) -> Manifest:
        m = cls(stage=stage, artifact=artifact, config_hash=config_hash, round=round_no, git_sha=git_sha())
        m.parents = [p.as_parent() for p in parents or []]
        m.timings = {"started": now_iso()}
        m._t0 = time.perf_counter()
        return m

    def as_parent(self) -> dict:
        return {"artifact": self.artifact, "stage": self.stage, "config_hash": self.config_hash,
                "finished": self.timings.get("finished")}

    def finish(self, folder: Path | None = None) -> Manifest:
        """Stamp the end time; list the files of ``folder`` (the artifact being written)."""
        self.timings["finished"] = now_iso()
        if self._t0:
            self.timings["seconds"] = round(time.perf_counter() - self._t0, 3)
        if folder is not None:
            self.files = sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*")
                                if p.is_file() and p.name != MANIFEST)
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("_t0", None)
        return d

    def write(self, folder: Path) -> Path:
        path = Path(folder) / MANIFEST
        tmp = path.with_suffix(".tmp")
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str) + "\n"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        """The manifest of ``folder``; a damaged one is a DuoError naming the file (the artifact is
        then redone with ``--force``)."""
        path = Path(folder) / MANIFEST
        fix = "remake the artifact: rerun its stage with --force"
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise DuoError(f"{path}: damaged manifest (not UTF-8 text); {fix}") from None
        except json.JSONDecodeError as exc:
            raise DuoError(f"{path}:{exc.lineno}: damaged manifest "
                           f"(not valid JSON: {exc.msg}); {fix}") from None
        missing = [k for k in ("stage", "artifact", "config_hash") if not isinstance(d, dict) or k not in d]
        if missing:
            found = "a JSON " + type(d).__name__ if not isinstance(d, dict) else "no " + ", ".join(missing)
            raise DuoError(f"{path}: damaged manifest (found {found}; "
                           f"expected an object with stage, artifact, config_hash); {fix}")
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d and not k.startswith("_")}
        return cls(**known)
