"""The Hugging Face Hub store: artifacts live in two Hub repos; the local store folder is their working copy.

- Data artifacts (``prepare``, ``round-N/synthesize|infer|evaluate|decide|report``) go to the
  dataset repo ``{namespace}/{dataset_repo}`` under ``<artifact name>/``, on ``main``; the dataset
  card (README.md) is refreshed in the same commit, and tag ``round-N`` is moved to it once a
  round's data is pushed.
- The adapter artifact ``round-N/finetune`` goes to the model repo ``{namespace}/{model_repo}``: the
  files of its ``adapter/`` folder at the repo root, its ``README.md`` as the one model card (given
  license, datasets and lineage here; the report adds the round's evaluation), everything else
  (manifest.json, train_log.jsonl) under ``duo/``; on ``main`` and on branch ``round-N``, so
  ``revision="round-N"`` pulls it back.

Each upload's commit sha is kept (``commit_of``; from the Hub, the commit that last changed the artifact's
manifest), so reports and cards name artifacts by commit: branches and tags move on a rerun, commits do not.

Each artifact is uploaded in ONE commit, manifest included, so the Hub never shows half an artifact
as complete. An artifact exists when its manifest is on the Hub; a local copy is used only while its
manifest is byte-identical to the Hub's (same git blob id), else ``open`` downloads it again.

This module is the layout (which repo, revision and path each artifact lives at);
the Hub calls themselves, with their retries and one-line errors, are in :mod:`.hub_transport`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from huggingface_hub import constants
from huggingface_hub.utils.sha import git_hash

from ..config import Config
from ..errors import DuoError
from ..manifest import MANIFEST, Manifest
from .base import Store, round_of
from .hub_cards import HubCards
from .hub_transport import NOT_FOUND, HubTransport


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


ADAPTER_CARD_COPY = "adapter/README.md"  # finetune's copy of README.md inside adapter/: one card on the Hub


def adapter_repo_path(rel: str) -> str | None:
    """Where a file of the finetune artifact goes in the model repo (inverse:
    :func:`adapter_artifact_path`); None for the adapter folder's copy of the card (the repo's
    README.md is the one card)."""
    if rel == ADAPTER_CARD_COPY:
        return None
    if rel.startswith("adapter/"):
        return rel[len("adapter/"):]
    return rel if rel == "README.md" else f"duo/{rel}"


def adapter_artifact_path(path: str) -> str | None:
    if path == ".gitattributes":
        return None
    if path == "README.md":
        return path
    return path[len("duo/"):] if path.startswith("duo/") else f"adapter/{path}"


class HubStore(HubCards, Store):
    """``Store`` backed by a Hugging Face Hub dataset repo and model repo; token from ``HF_TOKEN``.

    This class says where each artifact lives; :class:`~.hub_transport.HubTransport`
    (``self.hub``) talks to the Hub.
    """

    kind = "hub"

    def __init__(self, root: Path, cfg: Config):
        token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
        if not token:
            raise DuoError("store.kind is hub but HF_TOKEN is not set: "
                           "export a Hugging Face token with write access to the store's namespace")
        if not cfg.store.namespace:
            raise DuoError("store.namespace: required when store.kind is hub "
                           "(the Hub user or organisation that owns the dataset and model repos)")
        super().__init__(root)
        self.cfg = cfg
        self.namespace = cfg.store.namespace
        self.dataset_repo = f"{cfg.store.namespace}/{cfg.store.dataset_repo}"
        self.model_repo = f"{cfg.store.namespace}/{cfg.store.model_repo}"
        endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
        self.hub = HubTransport(endpoint, token, self.namespace, cfg.store.private)
        # artifact -> the commit it was uploaded in (this process's pushes)
        self._commits: dict[str, str] = {}

    @property
    def retry_delays(self) -> tuple[float, ...]:
        """Seconds to wait before each retry of a failed Hub call (tests set it to zeros)."""
        return self.hub.retry_delays

    @retry_delays.setter
    def retry_delays(self, delays: tuple[float, ...]) -> None:
        self.hub.retry_delays = tuple(delays)

    # -- where things are
    @staticmethod
    def is_adapter(name: str) -> bool:
        return name.endswith("/finetune") and round_of(name) is not None

    def _where(self, name: str) -> tuple[str, str, str, str]:
        """(repo_id, repo_type, revision, path of the manifest in the repo) of artifact ``name``."""
        if self.is_adapter(name):
            return self.model_repo, "model", f"round-{round_of(name)}", f"duo/{MANIFEST}"
        return self.dataset_repo, "dataset", "main", f"{name}/{MANIFEST}"

    def _artifact_path(self, name: str, path: str) -> str | None:
        """Where the repo file ``path`` goes in artifact ``name`` (None: not part of it)."""
        if self.is_adapter(name):
            return adapter_artifact_path(path)
        return path[len(name) + 1:] if path.startswith(f"{name}/") else None

    def describe(self, name: str) -> dict:
        """Where artifact ``name`` is: ``revision`` is its branch (``round-N``, moved by a rerun) or
        ``main``; ``commit`` the commit it was uploaded in (None when not on the Hub), and
        ``commit_url``/``blob_url`` the repo tree and file prefix pinned at that commit."""
        repo_id, repo_type, revision, _ = self._where(name)
        path = "" if self.is_adapter(name) else name
        repo_url = self.hub.url(repo_id, repo_type)
        url = f"{repo_url}/tree/{revision}" + (f"/{path}" if path else "")
        commit = self.commit_of(name)
        pinned = {"commit_url": f"{repo_url}/tree/{commit}" + (f"/{path}" if path else ""),
                  "blob_url": f"{repo_url}/blob/{commit}" + (f"/{path}" if path else "")} if commit else {}
        return {
            "location": url,
            "repo_id": repo_id,
            "repo_type": repo_type,
            "revision": revision,
            "path": path,
            "url": url,
            "repo_url": repo_url,
            "commit": commit,
            **pinned,
            "local": str(self.local_path(name)),
        }

    def commit_of(self, name: str) -> str | None:
        """The commit artifact ``name`` was uploaded in: recorded by this process's push, else the
        commit that last changed its manifest (every upload changes it: it carries the finish time).
        None when it is not there."""
        if name not in self._commits:
            repo_id, repo_type, revision, manifest_path = self._where(name)
            sha = self.hub.last_commit(repo_id, repo_type, revision, manifest_path)
            if sha is None:
                return None
            self._commits[name] = sha
        return self._commits[name]

    # -- reading
    def exists(self, name: str) -> bool:
        repo_id, repo_type, revision, manifest_path = self._where(name)
        return manifest_path in self.hub.tree(repo_id, repo_type, revision)

    def list(self, prefix: str = "") -> list[str]:
        tree = self.hub.tree(self.dataset_repo, "dataset", "main")
        names = [p[: -len(MANIFEST) - 1] for p in tree if p.endswith(f"/{MANIFEST}")]
        names += [f"{b}/finetune" for b in self.hub.branches(self.model_repo, "model")
                  if b.startswith("round-") and b[len("round-"):].isdigit()]
        return sorted(n for n in names if n.startswith(prefix))

    def _located(self, name: str) -> tuple[str, str, str, str, bool]:
        """Where the artifact is on the Hub, and whether the local copy's manifest is the Hub's,
        byte for byte."""
        repo_id, repo_type, revision, manifest_path = self._where(name)
        remote = self.hub.tree(repo_id, repo_type, revision).get(manifest_path)
        if remote is None:
            raise self.missing(name, "this stage")
        local = self.local_path(name) / MANIFEST
        current = local.is_file() and git_hash(local.read_bytes()) == remote.blob_id
        return repo_id, repo_type, revision, manifest_path, current

    def open(self, name: str) -> Path:
        repo_id, repo_type, revision, _, current = self._located(name)
        if current:
            return self.local_path(name)
        patterns = None if self.is_adapter(name) else [f"{name}/*"]
        snapshot = self.hub.snapshot(repo_id, repo_type, revision, patterns, name)
        missing = f"artifact {name} downloaded from {repo_id}@{revision} has no {MANIFEST}"
        with self._staged(name, missing) as tmp:
            for path in _files(snapshot):
                rel = self._artifact_path(name, path)
                if rel is None:
                    continue
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(snapshot / path, tmp / rel)
            if self.is_adapter(name) and (tmp / "README.md").is_file() and (tmp / "adapter").is_dir():
                shutil.copyfile(tmp / "README.md", tmp / ADAPTER_CARD_COPY)  # the local layout keeps both
        return self.local_path(name)

    def manifest(self, name: str) -> Manifest:
        """Only the manifest: spend totals and reports read every round's, and must not download adapters."""
        repo_id, repo_type, revision, manifest_path, current = self._located(name)
        local = self.local_path(name) / MANIFEST
        if not current:
            local = self.hub.download(repo_id, repo_type, manifest_path, f"{name}/{MANIFEST}", revision)
        return Manifest.read(local.parent)

    # -- the journal: segments at the same paths in the dataset repo as under ``root``
    def push_journal(self, files: dict[str, bytes]) -> int:
        """Upload journal segments (``journal/<stage>/round-N/part-*.jsonl`` -> content) that the
        Hub lacks or holds shorter, in one commit; the number uploaded. Runs in the flusher's thread
        too: it keeps off the tree cache."""
        if not files:
            return 0
        remote = self.hub.sizes_under(self.dataset_repo, "dataset", "main", "journal")
        files = {p: data for p, data in files.items() if remote.get(p, -1) < len(data)}
        if not files:
            return 0
        self.hub.ensure_repo(self.dataset_repo, "dataset")
        try:
            self.hub.commit(self.dataset_repo, "dataset", files, [], f"duo: journal ({len(files)} segments)")
        except NOT_FOUND as err:
            raise DuoError(f"Hugging Face Hub: {type(err).__name__} while uploading the journal; check "
                           f"store.namespace and that HF_TOKEN can write to {self.namespace}") from None
        return len(files)

    def pull_journal(self, prefix: str = "journal/") -> list[Path]:
        """Download the segments under ``prefix`` that are missing here or longer on the Hub than here."""
        remote = self.hub.sizes_under(self.dataset_repo, "dataset", "main", prefix)
        wanted = [p for p, size in remote.items() if p.startswith(prefix) and p.endswith(".jsonl")
                  and (not (self.root / p).is_file() or (self.root / p).stat().st_size < size)]
        if not wanted:
            return []
        snapshot = self.hub.snapshot(self.dataset_repo, "dataset", "main", wanted, "the journal")
        got = []
        for path in wanted:
            local = self.root / path
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(f".pull-{os.getpid()}-{local.name}")
            shutil.copyfile(snapshot / path, tmp)
            os.replace(tmp, local)  # whole: a segment is never seen half-copied
            got.append(local)
        return got

    # -- writing
    def published(self, name: str) -> None:
        try:
            self.push(name)
        except DuoError as err:
            raise DuoError(f"artifact {name} is complete locally at {self.local_path(name)} "
                           f"but was not uploaded: {err}") from None

    def push(self, name: str) -> str:
        """Upload the complete local artifact ``name`` to the Hub in one commit; return the commit sha."""
        folder = self.local_path(name)
        if not (folder / MANIFEST).is_file():
            raise self.missing(name, "push")
        self.hub.forget_trees()
        try:
            if self.is_adapter(name):
                return self._push_adapter(name, folder)
            return self._push_data(name, folder)
        except NOT_FOUND as err:
            raise DuoError(f"Hugging Face Hub: {type(err).__name__} while uploading {name}; "
                           "check store.namespace "
                           f"and that HF_TOKEN can write to {self.namespace}") from None
        finally:
            self.hub.forget_trees()

    def _push_data(self, name: str, folder: Path) -> str:
        self.hub.ensure_repo(self.dataset_repo, "dataset")
        remote = self.hub.tree(self.dataset_repo, "dataset", "main")
        uploads: dict = {f"{name}/{rel}": folder / rel for rel in _files(folder)}
        deletes = [p for p in remote if p.startswith(f"{name}/") and p not in uploads]
        uploads["README.md"] = self._dataset_card(name, folder, remote).encode()
        sha = self.hub.commit(self.dataset_repo, "dataset", uploads, deletes, f"duo: {name}")
        self._commits[name] = sha
        if round_of(name) is not None:
            self.hub.move_ref(self.dataset_repo, "dataset", "tag", f"round-{round_of(name)}", sha)
        return sha

    def _push_adapter(self, name: str, folder: Path) -> str:
        self.hub.ensure_repo(self.model_repo, "model")
        remote = self.hub.tree(self.model_repo, "model", "main")
        uploads: dict = {adapter_repo_path(rel): folder / rel for rel in _files(folder)}
        uploads.pop(None, None)
        if (folder / "README.md").is_file():
            card = (folder / "README.md").read_text(encoding="utf-8")
            uploads["README.md"] = self._model_card(card, round_of(name)).encode()
        deletes = [p for p in remote if p not in uploads and p != ".gitattributes"]
        sha = self.hub.commit(self.model_repo, "model", uploads, deletes, f"duo: {name}")
        self._commits[name] = sha
        self.hub.move_ref(self.model_repo, "model", "branch", f"round-{round_of(name)}", sha)
        return sha
