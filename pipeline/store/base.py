"""The artifact store: one interface, a local folder backend and a Hugging Face Hub backend.

An artifact is a folder named like ``prepare`` or ``round-2/finetune`` holding records and a ``manifest.json``.
It counts as complete only once its manifest is in place: writers build it in a temp folder and rename it in
one step, so a crashed stage never leaves a half artifact that a later stage would read as complete.
"""

from __future__ import annotations

import os
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ArtifactMissing, DuoError
from ..manifest import MANIFEST, Manifest


def artifact_name(stage: str, round_no: int | None = None) -> str:
    """``prepare`` is per task; every other stage's artifact is per round: ``round-<N>/<stage>``."""
    if stage == "prepare" or round_no is None:
        return stage
    return f"round-{int(round_no)}/{stage}"


def latest_round(store: Store, stage: str | None = None) -> int | None:
    """The highest round holding a complete artifact (of ``stage``, when given); None when there is none."""
    rounds = [round_of(n) for n in store.list("round-") if stage is None or n.endswith(f"/{stage}")]
    return max((r for r in rounds if r is not None), default=None)


def round_of(name: str) -> int | None:
    head = name.split("/", 1)[0]
    return int(head.split("-", 1)[1]) if head.startswith("round-") else None


class Store(ABC):
    """Where a task's artifacts live. ``root`` is always a local folder (the hub backend caches there)."""

    kind: str = "base"

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    # -- paths
    def local_path(self, name: str) -> Path:
        return self.root / name

    @property
    def journal_dir(self) -> Path:
        """Service-LLM journals: always on local disk, so a rerun re-uses answers already paid for."""
        path = self.root / "journal"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- reading
    def has_local(self, name: str) -> bool:
        return (self.local_path(name) / MANIFEST).is_file()

    @abstractmethod
    def exists(self, name: str) -> bool:
        """True when a complete artifact ``name`` is in the store."""

    @abstractmethod
    def open(self, name: str) -> Path:
        """A local folder holding the complete artifact (downloaded first when needed); ArtifactMissing if none."""

    def manifest(self, name: str) -> Manifest:
        return Manifest.read(self.open(name))

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Names of the complete artifacts whose name starts with ``prefix``."""

    def describe(self, name: str) -> dict:
        """Where an artifact is, for reports and ``$GITHUB_OUTPUT``: at least ``location``."""
        return {"location": str(self.local_path(name))}

    def missing(self, name: str, needed_by: str) -> ArtifactMissing:
        return ArtifactMissing(f"{needed_by} needs artifact '{name}', which is not in the {self.kind} store "
                               f"at {self.root}; run the stage that makes it first")

    # -- writing
    @contextmanager
    def write(self, name: str) -> Iterator[Path]:
        """Yield a temp folder to fill; on success (manifest written) it replaces ``name`` in one rename.

        On an exception the temp folder is removed and any earlier complete artifact is left as it was.
        """
        with self._staged(name, f"artifact {name}: the stage wrote no {MANIFEST}") as tmp:
            yield tmp
        self.published(name)

    @contextmanager
    def _staged(self, name: str, no_manifest: str) -> Iterator[Path]:
        """A temp folder beside ``name``'s local copy, swapped in when filled with a manifest, else removed.

        Both writers (a stage's ``write`` and the hub backend's download) go through here.
        """
        final = self.local_path(name)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            yield tmp
            if not (tmp / MANIFEST).is_file():
                raise DuoError(no_manifest)
            self._swap_in(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @staticmethod
    def _swap_in(tmp: Path, final: Path) -> None:
        """Move the finished folder ``tmp`` to ``final``, replacing an earlier copy with two renames."""
        old = None
        if final.exists():
            old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def published(self, name: str) -> None:
        """Called after an artifact landed locally; the hub backend uploads it here."""
