"""The embedded default store: a folder on this machine (default ``.duo/<task>/``)."""

from __future__ import annotations

from pathlib import Path

from ..manifest import MANIFEST
from .base import Store


class LocalStore(Store):
    kind = "local"

    def exists(self, name: str) -> bool:
        return self.has_local(name)

    def open(self, name: str) -> Path:
        if not self.has_local(name):
            raise self.missing(name, "this stage")
        return self.local_path(name)

    def list(self, prefix: str = "") -> list[str]:
        names = []
        for manifest in self.root.rglob(MANIFEST):
            rel = manifest.parent.relative_to(self.root).as_posix()
            if any(part.startswith(".") for part in rel.split("/")) or rel.startswith("journal"):
                continue
            if rel.startswith(prefix):
                names.append(rel)
        return sorted(names)
