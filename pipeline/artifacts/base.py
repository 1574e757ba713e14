"""An artifact's declaration and the one "reuse the artifact if nothing it was
made from changed" rule.

Each artifact declares once what its stage reads (DVC's ``deps``/``params``, Dagster's asset
inputs): the config keys that decide it, the keys that only change how it runs, the templates and
schemas whose contents shape it and the artifacts it is made from. :func:`Artifact.inputs` derives
the fingerprint from that declaration; no stage lists its own keys. A test records every key each
stage reads (``config_reads.recording``) and fails on one not declared.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from ..config import Config
from ..manifest import Manifest
from ..store import Store, artifact_name

# Keys no artifact's content depends on: where the store is, how often the journal is flushed, where
# the rounds are tracked (the report, which links the run, declares ``tracking`` itself).
UNHASHED = ("store", "journal", "tracking")
# The spend cap and the prices that count what was spent: a complete artifact does not depend on
# them, and one the cap cut short is redone when the cap is raised (``reusable``'s ``budget_usd``).
SPEND_CAP = (
    "budget.max_spend_usd",
    "service.synthesize.price_input_per_1m",
    "service.synthesize.price_output_per_1m",
    "service.judge.price_input_per_1m",
    "service.judge.price_output_per_1m",
)
# A service's keys that change how fast or with which credentials it is asked, not what it answers.
SERVICE_RUN_KEYS = ("rpm", "tpm", "concurrency", "max_concurrency", "timeout_s", "max_retries",
                    "api_key_env", "allow_unpriced", "refusals_count")


def _sha(blob: object) -> str:
    text = blob if isinstance(blob, str) else json.dumps(blob, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    """Short sha256 of a file's bytes: the part of a template or schema that can change a stage's output."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def service_run_keys(role: str) -> tuple[str, ...]:
    """``service.<role>.<key>`` for every key of a service that changes how it is
    asked, not what it answers."""
    return tuple(f"service.{role}.{k}" for k in SERVICE_RUN_KEYS)


@cache
def schema_defaults() -> dict:
    """The config document with every schema default filled in (what a key 'at its
    default' is compared with)."""
    from ..config import _fill_defaults
    from ..schemas import load_schema

    schema = load_schema("config.schema.json")
    return _fill_defaults({}, schema, schema)


_MISSING = object()


def _get(doc: object, path: str) -> object:
    node = doc
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list):  # a list of sections (a panel of judges): the key of each
            node = [item.get(part) if isinstance(item, dict) else None for item in node]
        else:
            return _MISSING
    return node


def _put(doc: dict, path: str, value: object) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
    doc[leaf] = copy.deepcopy(value)


def _drop(doc: dict, path: str) -> None:
    *parents, leaf = path.split(".")
    nodes = [doc]
    for part in parents:
        nodes = [n[part] for n in nodes if isinstance(n, dict) and part in n]
        nodes = [item for n in nodes for item in (n if isinstance(n, list) else [n])]
    for node in nodes:
        if isinstance(node, dict):
            node.pop(leaf, None)


def covers(declared: Iterable[str], key: str) -> bool:
    """True when ``key`` is one of ``declared`` or inside one (``synthesize`` covers
    ``synthesize.samples``)."""
    return any(key == d or key.startswith(d + ".") for d in declared)


@dataclass(frozen=True)
class Artifact:
    """What one stage's artifact is made from.

    Args:
        stage: the verb, which is also the artifact folder (``round-N/<stage>``, or ``prepare``).
        reads: config keys (dotted; a section means every key in it) that decide
            the artifact's content.
        unhashed: config keys the stage reads that are left out of the fingerprint, each for a
            reason its declaration gives: how the stage runs (threads, processes, rate limits), or a
            cap whose effect is recorded another way (the spend cap: an artifact it cut short is
            redone when it is raised).
        later: keys added after artifacts of this kind were first made: they count only when set
            away from their schema default, so an artifact made before them stays valid.
        files: the templates and schemas whose contents shape the artifact, for a config.
        parents: the names of the artifacts it is made from, for (config, store, round).
    """

    stage: str
    reads: tuple[str, ...]
    unhashed: tuple[str, ...] = ()
    later: tuple[str, ...] = ()
    files: Callable[[Config], Iterable[Path]] = lambda cfg: ()
    parents: Callable[[Config, Store, int | None], list[str]] = lambda cfg, store, round_no: []

    def name(self, round_no: int | None) -> str:
        return artifact_name(self.stage, round_no)

    def config(self, cfg: Config) -> dict:
        """The part of the config that decides this artifact: the declared keys as they are in the
        YAML document with its schema defaults (``cfg.raw``), less the ``unhashed`` keys and the
        ``later`` keys left at default."""
        out: dict = {}
        for path in self.reads:
            value = _get(cfg.raw, path)
            if value is not _MISSING:
                _put(out, path, value)
        for path in self.unhashed:
            _drop(out, path)
        for path in self.later:
            value = _get(cfg.raw, path)
            if value is _MISSING or value == _get(schema_defaults(), path):
                _drop(out, path)
            else:
                _put(out, path, value)
        return out

    def inputs(self, cfg: Config, store: Store, round_no: int | None, **values) -> StageInputs:
        """Everything that decides this artifact; ``values`` are what else decides it (a target
        count, a source file's hash, the decision itself)."""
        parents = [store.manifest(n) for n in self.parents(cfg, store, round_no)]
        return StageInputs(self.stage, round_no, self.config(cfg), tuple(self.files(cfg)), parents, values)

    def undeclared(self, keys: Iterable[str]) -> list[str]:
        """The keys read that this declaration does not name (the recording test's failure list)."""
        known = self.reads + self.unhashed + self.later + UNHASHED
        return sorted(k for k in keys if not covers(known, k))


@dataclass
class StageInputs:
    """Everything that decides one stage's artifact (made by :meth:`Artifact.inputs`).

    Args:
        stage: the verb (``prepare``, ``synthesize``, ...).
        round_no: the round, or None for per-task artifacts (``prepare``).
        config: the config subset the artifact's declaration names (a JSON-able dict).
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
    """The cost recorded by the artifact a stage is about to replace: money once
    spent stays in the ledger."""
    return float(store.manifest(name).usage.get("cost_usd") or 0.0) if store.exists(name) else 0.0
