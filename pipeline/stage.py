"""What every stage shares: the inputs it declares, the one "reuse the artifact if nothing changed" rule, and the
one place a stage's summary reaches the terminal, ``$GITHUB_OUTPUT`` and the job summary.

A stage declares its inputs as a :class:`StageInputs`: the config subset it reads, the *contents* of the
templates and schemas it uses, the upstream artifacts it reads and any other value that decides its output. The
fingerprint of all of that goes into the manifest; a complete artifact whose fingerprint matches is reused. So an
edited prompt template redoes exactly the stages that render it, and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import gha
from .manifest import Manifest
from .store import Store, artifact_name


def _sha(blob: object) -> str:
    text = blob if isinstance(blob, str) else json.dumps(blob, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    """Short sha256 of a file's bytes: the part of a template or schema that can change a stage's output."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


@dataclass
class StageInputs:
    """Everything that decides one stage's artifact.

    Args:
        stage: the verb (``prepare``, ``synthesize``, ...).
        round_no: the round, or None for per-task artifacts (``prepare``).
        config: the config subset the stage reads (a JSON-able dict).
        files: templates and schemas whose *contents* shape the output.
        parents: manifests of the artifacts the stage reads.
        values: anything else that decides the output (a target count, a source file's hash, ...).
    """

    stage: str
    round_no: int | None
    config: dict
    files: Iterable[Path] = ()
    parents: list[Manifest] = field(default_factory=list)
    values: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return artifact_name(self.stage, self.round_no)

    @property
    def config_hash(self) -> str:
        return _sha(self.config)

    @property
    def fingerprint(self) -> str:
        files = {Path(p).name: file_digest(p) for p in self.files}
        return _sha({"config": self.config, "files": files, "values": self.values,
                     "parents": [p.as_parent() for p in self.parents]})

    def start(self) -> Manifest:
        """A new manifest for this artifact, carrying the config hash, the fingerprint and the parents."""
        m = Manifest.start(self.stage, self.name, self.config_hash, self.round_no, parents=self.parents)
        m.fingerprint = self.fingerprint
        return m


def stopped_by_budget(m: Manifest, budget_usd: float) -> bool:
    """True for an artifact cut short by the spend budget when the budget has since been raised: redo it (the
    answers already paid for come back from the journal)."""
    extra = m.extra or {}
    return extra.get("stopped") == "budget" and budget_usd > float(extra.get("budget_usd") or 0.0)


def reusable(store: Store, inputs: StageInputs, *, force: bool = False, budget_usd: float | None = None
             ) -> Manifest | None:
    """The complete artifact when nothing it was made from changed, else None (the stage then redoes it)."""
    if force or not store.exists(inputs.name):
        return None
    old = store.manifest(inputs.name)
    if budget_usd is not None and stopped_by_budget(old, budget_usd):
        return None
    return old if old.fingerprint == inputs.fingerprint else None


def carried_cost(store: Store, name: str) -> float:
    """The cost recorded by the artifact a stage is about to replace: money once spent stays in the ledger."""
    return float(store.manifest(name).usage.get("cost_usd") or 0.0) if store.exists(name) else 0.0


def publish(store: Store, artifact: str, line: str, title: str | None = None, **outputs) -> None:
    """Print a stage's one-line summary and hand it to Actions: ``artifact``, ``location`` and ``outputs`` as
    step outputs (names with ``_`` become kebab-case), ``line`` in the job summary under ``title``."""
    print(line)
    gha.set_output("artifact", artifact)
    gha.set_output("location", store.describe(artifact).get("location") or str(store.local_path(artifact)))
    for key, value in outputs.items():
        gha.set_output(key.replace("_", "-"), "" if value is None else value)
    gha.step_summary(f"### {title or artifact}\n\n{line}")


def round_arg(args, store: Store, stage: str | None = None) -> int:
    """``--round`` when given (0 is the untuned baseline), else the latest round with an artifact (of ``stage``,
    when given), else 1."""
    given = getattr(args, "round", None)
    if given is not None:
        return int(given)
    from .store import latest_round

    return latest_round(store, stage) or 1
