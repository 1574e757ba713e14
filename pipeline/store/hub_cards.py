"""The Hub store's two cards: the dataset repo's README.md (refreshed with every data commit) and the model
card (the adapter's README.md, given duo's metadata and lineage on upload and the round's evaluation by the
report). A mixin of :class:`~.hub.HubStore`, which supplies ``cfg``, ``hub``, the repo ids and ``commit_of``.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import DuoError
from ..manifest import MANIFEST
from . import cards
from .hub_transport import NOT_FOUND


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


class HubCards:
    """Card writing for :class:`~.hub.HubStore`."""

    def _dataset_card(self, name: str, folder: Path, remote: dict) -> str:
        artifacts: dict[str, dict] = {}
        for path, entry in remote.items():
            if path.endswith(f"/{MANIFEST}") and not path.startswith(f"{name}/"):
                artifacts[path[: -len(MANIFEST) - 1]] = {"files": [], "manifest": None}
        for path, entry in remote.items():
            for other, info in artifacts.items():
                if path.startswith(f"{other}/") and path != f"{other}/{MANIFEST}":
                    info["files"].append((path[len(other) + 1:], entry.size))
        with ThreadPoolExecutor(max_workers=8) as pool:  # a fresh runner downloads every other manifest
            for info, manifest in zip(artifacts.values(), pool.map(self._manifest_dict, list(artifacts))):
                info["manifest"] = manifest
        files = [(rel, (folder / rel).stat().st_size) for rel in _files(folder) if rel != MANIFEST]
        artifacts[name] = {"files": files, "manifest": self._manifest_dict(name)}
        model_url = self.hub.url(self.model_repo, "model")
        return cards.dataset_card(self.cfg, self.dataset_repo, self.model_repo, model_url,
                                  [{"name": n, **info} for n, info in artifacts.items()])

    def _manifest_dict(self, name: str) -> dict | None:
        """The manifest of a data artifact: the local copy when there is one,
        else downloaded (None if absent)."""
        local = self.local_path(name) / MANIFEST
        try:
            if not local.is_file():
                local = self.hub.download(self.dataset_repo, "dataset", f"{name}/{MANIFEST}",
                                          f"{name}/{MANIFEST}")
            return json.loads(local.read_text(encoding="utf-8"))
        except (NOT_FOUND, OSError, ValueError):
            return None

    # -- the model card
    def training_data(self, round_no: int) -> tuple[str | None, str]:
        """(commit, pinned tree url) of the dataset repo holding round ``round_no``'s training data:
        the commit of its newest training artifact (the latest ``round-k/synthesize``, k <= N, else
        ``prepare``)."""
        for name in [f"round-{k}/synthesize" for k in range(round_no, 0, -1)] + ["prepare"]:
            sha = self.commit_of(name)
            if sha:
                return sha, f"{self.hub.url(self.dataset_repo, 'dataset')}/tree/{sha}"
        return None, self.hub.url(self.dataset_repo, "dataset")

    def _model_card(self, text: str, round_no: int, results: dict | None = None) -> str:
        sha, url = self.training_data(round_no)
        return cards.finish_model_card(text, self.cfg,
                                       model_repo=self.model_repo,
                                       dataset_repo=self.dataset_repo,
                                       lineage={"round": round_no, "data_revision": sha, "data_url": url},
                                       results=results)

    def update_model_card(self, round_no: int, results: dict) -> str | None:
        """Rewrite round ``round_no``'s model card with its evaluation
        (``cards.finish_model_card``'s ``results``) on branch ``round-N``, and on ``main`` too while
        ``main`` is that round's commit; the new commit's sha, or None when there is no adapter or
        nothing changed. The adapter files stay as uploaded."""
        name = f"round-{round_no}/finetune"
        branch = f"round-{round_no}"
        head = self.hub.head(self.model_repo, "model", branch)
        if head is None:
            return None
        try:
            old = self.hub.download(self.model_repo, "model", "README.md", f"the model card of {name}", head)
            text = old.read_text(encoding="utf-8")
        except NOT_FOUND:
            text = f"# {self.cfg.task.name}: LoRA adapter, round {round_no}\n"
        card = self._model_card(text, round_no, results)
        if card == text:
            return None
        on_main = self.hub.head(self.model_repo, "model", "main") == head
        message = f"duo: model card of {name} with its evaluation"
        sha = self.hub.commit(self.model_repo, "model", {"README.md": card.encode()}, [], message,
                              parent=head, revision="main" if on_main else branch)
        if sha is None:
            raise DuoError(f"{self.model_repo}: another commit came in "
                           f"while updating the model card of {name}; rerun the report")
        if on_main:
            self.hub.move_ref(self.model_repo, "model", "branch", branch, sha)
        return sha
