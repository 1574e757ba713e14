"""The artifact store: one interface, a local folder backend and a Hugging Face Hub backend.

An artifact is a folder named like ``prepare`` or ``round-2/finetune`` holding records and a
``manifest.json``. It counts as complete only once its manifest is in place: writers build it in a
temp folder and rename it in one step, so a crashed stage never leaves a half artifact that a later
stage would read as complete.

Temp folders carry their writer's pid (``.tmp-<name>-<pid>-<hex>``, ``.old-<name>-<pid>-<hex>``):
the next write removes those of dead writers, and opening the store puts back a previous copy
(``.old-*``) that a writer killed between its two renames left without a current one.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from ..errors import ArtifactMissing, DuoError
from ..manifest import MANIFEST, Manifest

# the untuned base student's round: answered and scored once per task, the baseline of every round
BASELINE_ROUND = 0


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


LEFTOVER = re.compile(r"^\.(tmp|old)-(.+?)(?:-(\d+))?-[0-9a-f]{8}$")  # kind, artifact folder, writer pid
LEGACY_AGE_S = 3600  # a leftover named without a pid (older duo) is removed once this old


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process: leave its folder alone
    return True


def _leftover(path: Path) -> tuple[str, str] | None:
    """(kind, artifact folder name) of a temp folder whose writer is gone; None for anything else."""
    m = LEFTOVER.match(path.name)
    if not m or not path.is_dir():
        return None
    if m.group(3) is not None:
        dead = not _alive(int(m.group(3)))
    else:
        try:
            dead = time.time() - path.stat().st_mtime > LEGACY_AGE_S
        except OSError:
            return None
    return (m.group(1), m.group(2)) if dead else None


class Store(ABC):
    """Where a task's artifacts live. ``root`` is always a local folder (the hub backend caches there)."""

    kind: str = "base"
    # hook(store, name), called once artifact ``name`` is written: the layers above the store
    # register what a finished stage means to them (the journal sync flushes the stage's journal),
    # so the store imports none of them
    after_write: ClassVar[list[Callable[[Store, str], None]]] = []

    def __init__(self, root: Path):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise DuoError(f"store.path: {self.root} is a file; "
                           "expected a folder (or a path that does not exist yet)")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DuoError(f"store.path: cannot create {self.root} ({exc.strerror or exc})") from None
        self._restore_orphans()

    def _restore_orphans(self) -> None:
        """Put back the previous copy of an artifact whose
        writer died between the two renames of its swap."""
        folders = [self.root, *(p for p in self.root.glob("round-*") if p.is_dir())]
        for folder in folders:
            for path in sorted(folder.glob(".old-*")):
                found = _leftover(path)
                if found is None:
                    continue
                final = folder / found[1]
                if not final.exists() and (path / MANIFEST).is_file():
                    try:
                        os.replace(path, final)
                    except OSError:
                        pass

    @staticmethod
    def _sweep(final: Path) -> None:
        """Remove the ``.tmp-*``/``.old-*`` folders that dead writers left beside ``final``."""
        for path in final.parent.glob(f".*-{final.name}-*"):
            found = _leftover(path)
            if found is not None and found[1] == final.name:
                if found[0] == "old" and not final.exists() and (path / MANIFEST).is_file():
                    os.replace(path, final)  # the only copy left: keep it
                else:
                    shutil.rmtree(path, ignore_errors=True)

    # -- paths
    def local_path(self, name: str) -> Path:
        return self.root / name

    @property
    def journal_dir(self) -> Path:
        """Service-LLM journals: always on local disk, so a rerun re-uses answers already paid for."""
        path = self.root / "journal"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- the journal (append-only segments under ``journal/``): the store only carries the segments; opening,
    # flushing and reading them is pipeline/llm/journal/sync.py
    def push_journal(self, files: dict[str, bytes]) -> int:
        """Copy journal segments (store-relative path -> content) to the store;
        the number copied (the local store holds them already: 0)."""
        return 0

    def pull_journal(self, prefix: str = "journal/") -> list[Path]:
        """Bring the store's journal segments under ``prefix`` to ``root``;
        the local files that came (none here)."""
        return []

    # -- reading
    def has_local(self, name: str) -> bool:
        return (self.local_path(name) / MANIFEST).is_file()

    @abstractmethod
    def exists(self, name: str) -> bool:
        """True when a complete artifact ``name`` is in the store."""

    @abstractmethod
    def open(self, name: str) -> Path:
        """A local folder holding the complete artifact (downloaded first when needed);
        ArtifactMissing if none."""

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
        for hook in list(self.after_write):
            hook(self, name)

    @contextmanager
    def _staged(self, name: str, no_manifest: str) -> Iterator[Path]:
        """A temp folder beside ``name``'s local copy, swapped in when filled with a manifest, else removed.

        Both writers (a stage's ``write`` and the hub backend's download) go through here.
        """
        final = self.local_path(name)
        final.parent.mkdir(parents=True, exist_ok=True)
        self._sweep(final)
        tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
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
        """Move the finished folder ``tmp`` to ``final``, replacing an earlier copy with two renames.

        The earlier copy is moved aside only once ``tmp`` is complete; a kill between the renames
        leaves it as ``.old-*``, which the next opening of the store puts back
        (``_restore_orphans``).
        """
        old = None
        if final.exists():
            old = final.parent / f".old-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def published(self, name: str) -> None:
        """Called after an artifact landed locally; the hub backend uploads it here."""
