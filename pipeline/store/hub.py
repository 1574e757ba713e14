"""The Hugging Face Hub store: artifacts live in two Hub repos; the local store folder is their working copy.

- Data artifacts (``prepare``, ``round-N/synthesize|infer|evaluate|decide|report``) go to the dataset repo
  ``{namespace}/{dataset_repo}`` under ``<artifact name>/``, on ``main``; the dataset card (README.md) is refreshed
  in the same commit, and tag ``round-N`` is moved to it once a round's data is pushed.
- The adapter artifact ``round-N/finetune`` goes to the model repo ``{namespace}/{model_repo}``: the files of its
  ``adapter/`` folder at the repo root, its ``README.md`` as the model card, everything else (manifest.json,
  train_log.jsonl) under ``duo/``; on ``main`` and on branch ``round-N``, so ``revision="round-N"`` pulls it back.

Each artifact is uploaded in ONE commit, manifest included, so the Hub never shows half an artifact as complete.
An artifact exists when its manifest is on the Hub; a local copy is used only while its manifest is byte-identical
to the Hub's (same git blob id), else ``open`` downloads it again.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants, snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils.sha import git_hash

from ..config import Config
from ..errors import DuoError
from ..manifest import MANIFEST, Manifest
from . import cards
from .base import Store, round_of

try:
    from httpx2 import TransportError
except ImportError:  # huggingface_hub before 2.x talks through other HTTP clients
    TransportError = OSError

TRANSIENT = {408, 429, 500, 502, 503, 504}
NOT_FOUND = (RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError)


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:2])[:300] if lines else type(err).__name__


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def adapter_repo_path(rel: str) -> str:
    """Where a file of the finetune artifact goes in the model repo (inverse: :func:`adapter_artifact_path`)."""
    if rel.startswith("adapter/") and rel != "adapter/README.md":
        return rel[len("adapter/"):]
    return rel if rel == "README.md" else f"duo/{rel}"


def adapter_artifact_path(path: str) -> str | None:
    if path == ".gitattributes":
        return None
    if path == "README.md":
        return path
    return path[len("duo/"):] if path.startswith("duo/") else f"adapter/{path}"


class HubStore(Store):
    """``Store`` backed by a Hugging Face Hub dataset repo and model repo; token from ``HF_TOKEN``."""

    kind = "hub"
    retry_delays: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)

    def __init__(self, root: Path, cfg: Config):
        token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
        if not token:
            raise DuoError("store.kind is hub but HF_TOKEN is not set: export a Hugging Face token with write "
                           "access to the store's namespace")
        if not cfg.store.namespace:
            raise DuoError("store.namespace: required when store.kind is hub (the Hub user or organisation that "
                           "owns the dataset and model repos)")
        super().__init__(root)
        self.cfg = cfg
        self.token = token
        self.namespace = cfg.store.namespace
        self.dataset_repo = f"{cfg.store.namespace}/{cfg.store.dataset_repo}"
        self.model_repo = f"{cfg.store.namespace}/{cfg.store.model_repo}"
        self.private = cfg.store.private
        self.endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
        self.api = HfApi(endpoint=self.endpoint, token=token)
        self._trees: dict[tuple[str, str], dict] = {}
        self._created: set[str] = set()

    # -- where things are
    @staticmethod
    def is_adapter(name: str) -> bool:
        return name.endswith("/finetune") and round_of(name) is not None

    def _where(self, name: str) -> tuple[str, str, str, str]:
        """(repo_id, repo_type, revision, path of the manifest in the repo) of artifact ``name``."""
        if self.is_adapter(name):
            return self.model_repo, "model", f"round-{round_of(name)}", f"duo/{MANIFEST}"
        return self.dataset_repo, "dataset", "main", f"{name}/{MANIFEST}"

    def _url(self, repo_id: str, repo_type: str) -> str:
        return f"{self.endpoint}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"

    def describe(self, name: str) -> dict:
        repo_id, repo_type, revision, _ = self._where(name)
        path = "" if self.is_adapter(name) else name
        url = f"{self._url(repo_id, repo_type)}/tree/{revision}" + (f"/{path}" if path else "")
        return {"location": url, "repo_id": repo_id, "repo_type": repo_type, "revision": revision, "path": path,
                "url": url, "local": str(self.local_path(name))}

    # -- calling the Hub
    def _call(self, what: str, fn):
        """Run ``fn`` with retries on transient errors (429, 5xx, network); other errors become one-line DuoErrors.

        Not-found errors pass through for the caller to handle.
        """
        for attempt in range(len(self.retry_delays) + 1):
            last = attempt == len(self.retry_delays)
            try:
                return fn()
            except NOT_FOUND:
                raise
            except HfHubHTTPError as err:
                status = err.response.status_code if err.response is not None else None
                if status in (401, 403):
                    raise DuoError(f"Hugging Face Hub refused to {what} ({status}): check that HF_TOKEN is valid and "
                                   f"can write to {self.namespace}") from None
                if status not in TRANSIENT or last:
                    raise DuoError(f"Hugging Face Hub: could not {what} ({status}): {_first_line(err)}") from None
            except (TransportError, LocalEntryNotFoundError) as err:
                if last:
                    raise DuoError(f"Hugging Face Hub at {self.endpoint}: could not {what}: {_first_line(err)}") \
                        from None
            except ValueError as err:  # the client's own checks: invalid card metadata, malformed replies
                raise DuoError(f"Hugging Face Hub: could not {what}: {_first_line(err)}") from None
            time.sleep(self.retry_delays[attempt])

    def _tree(self, repo_type: str, revision: str) -> dict:
        """``path -> RepoFile`` of a repo revision ({} when the repo or revision is missing); cached until a push."""
        key = (repo_type, revision)
        if key not in self._trees:
            repo_id = self.model_repo if repo_type == "model" else self.dataset_repo
            try:
                entries = self._call(f"list {repo_id}@{revision}", lambda: list(self.api.list_repo_tree(
                    repo_id, recursive=True, revision=revision, repo_type=repo_type)))
                self._trees[key] = {e.path: e for e in entries if hasattr(e, "blob_id")}
            except NOT_FOUND:
                self._trees[key] = {}
        return self._trees[key]

    # -- reading
    def exists(self, name: str) -> bool:
        _, repo_type, revision, manifest_path = self._where(name)
        return manifest_path in self._tree(repo_type, revision)

    def list(self, prefix: str = "") -> list[str]:
        names = [p[: -len(MANIFEST) - 1] for p in self._tree("dataset", "main") if p.endswith(f"/{MANIFEST}")]
        try:
            refs = self._call(f"list the branches of {self.model_repo}",
                              lambda: self.api.list_repo_refs(self.model_repo, repo_type="model"))
            names += [f"{b.name}/finetune" for b in refs.branches if b.name.startswith("round-")
                      and b.name[len("round-"):].isdigit()]
        except NOT_FOUND:
            pass
        return sorted(n for n in names if n.startswith(prefix))

    def _located(self, name: str) -> tuple[str, str, str, str, bool]:
        """Where the artifact is on the Hub, and whether the local copy's manifest is the Hub's, byte for byte."""
        repo_id, repo_type, revision, manifest_path = self._where(name)
        remote = self._tree(repo_type, revision).get(manifest_path)
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
        snapshot = Path(self._call(f"download {name} from {repo_id}@{revision}", lambda: snapshot_download(
            repo_id, repo_type=repo_type, revision=revision, allow_patterns=patterns, token=self.token,
            endpoint=self.endpoint, cache_dir=os.environ.get("HF_HUB_CACHE"))))
        with self._staged(name, f"artifact {name} downloaded from {repo_id}@{revision} has no {MANIFEST}") as tmp:
            for path in _files(snapshot):
                rel = adapter_artifact_path(path) if self.is_adapter(name) else path[len(name) + 1:]
                if rel is None or (not self.is_adapter(name) and not path.startswith(f"{name}/")):
                    continue
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(snapshot / path, tmp / rel)
        return self.local_path(name)

    def manifest(self, name: str) -> Manifest:
        """Only the manifest: spend totals and reports read every round's, and must not download adapters."""
        repo_id, repo_type, revision, manifest_path, current = self._located(name)
        local = self.local_path(name) / MANIFEST
        if not current:
            local = Path(self._call(f"download {name}/{MANIFEST}", lambda: self.api.hf_hub_download(
                repo_id, manifest_path, repo_type=repo_type, revision=revision,
                cache_dir=os.environ.get("HF_HUB_CACHE"))))
        return Manifest.read(local.parent)

    # -- writing
    def published(self, name: str) -> None:
        try:
            self.push(name)
        except DuoError as err:
            raise DuoError(f"artifact {name} is complete locally at {self.local_path(name)} but was not uploaded: "
                           f"{err}") from None

    def push(self, name: str) -> str:
        """Upload the complete local artifact ``name`` to the Hub in one commit; return the commit sha."""
        folder = self.local_path(name)
        if not (folder / MANIFEST).is_file():
            raise self.missing(name, "push")
        self._trees.clear()
        try:
            if self.is_adapter(name):
                return self._push_adapter(name, folder)
            return self._push_data(name, folder)
        except NOT_FOUND as err:
            raise DuoError(f"Hugging Face Hub: {type(err).__name__} while uploading {name}; check store.namespace "
                           f"and that HF_TOKEN can write to {self.namespace}") from None
        finally:
            self._trees.clear()

    def _ensure_repo(self, repo_id: str, repo_type: str) -> None:
        if repo_id not in self._created:
            self._call(f"create {repo_type} repo {repo_id}", lambda: self.api.create_repo(
                repo_id, repo_type=repo_type, private=self.private, exist_ok=True))
            self._created.add(repo_id)

    def _commit(self, repo_id: str, repo_type: str, uploads: dict, deletes: list[str], message: str) -> str:
        def attempt():  # operations are single-use: build them afresh for every try
            ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=src if isinstance(src, bytes) else str(src))
                   for p, src in sorted(uploads.items())]
            ops += [CommitOperationDelete(path_in_repo=p) for p in deletes]
            return self.api.create_commit(repo_id, operations=ops, commit_message=message, repo_type=repo_type,
                                          revision="main").oid
        return self._call(f"commit to {repo_id}", attempt)

    def _move_ref(self, repo_id: str, repo_type: str, kind: str, ref: str, sha: str) -> None:
        """Point branch or tag ``ref`` at commit ``sha`` (delete and recreate when it exists)."""
        refs = self._call(f"list refs of {repo_id}", lambda: self.api.list_repo_refs(repo_id, repo_type=repo_type))
        current = {r.name: r.target_commit for r in (refs.branches if kind == "branch" else refs.tags)}
        if current.get(ref) == sha:
            return
        if kind == "branch":
            if ref in current:
                self._call(f"delete branch {ref}", lambda: self.api.delete_branch(repo_id, branch=ref,
                                                                                   repo_type=repo_type))
            self._call(f"create branch {ref}", lambda: self.api.create_branch(
                repo_id, branch=ref, revision=sha, repo_type=repo_type, exist_ok=True))
        else:
            if ref in current:
                self._call(f"delete tag {ref}", lambda: self.api.delete_tag(repo_id, tag=ref, repo_type=repo_type))
            self._call(f"create tag {ref}", lambda: self.api.create_tag(
                repo_id, tag=ref, revision=sha, repo_type=repo_type, exist_ok=True))

    def _push_data(self, name: str, folder: Path) -> str:
        self._ensure_repo(self.dataset_repo, "dataset")
        remote = self._tree("dataset", "main")
        uploads: dict = {f"{name}/{rel}": folder / rel for rel in _files(folder)}
        deletes = [p for p in remote if p.startswith(f"{name}/") and p not in uploads]
        uploads["README.md"] = self._dataset_card(name, folder, remote).encode()
        sha = self._commit(self.dataset_repo, "dataset", uploads, deletes, f"duo: {name}")
        if round_of(name) is not None:
            self._move_ref(self.dataset_repo, "dataset", "tag", f"round-{round_of(name)}", sha)
        return sha

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
        artifacts[name] = {"files": [(rel, (folder / rel).stat().st_size) for rel in _files(folder) if rel != MANIFEST],
                           "manifest": self._manifest_dict(name)}
        return cards.dataset_card(self.cfg, self.dataset_repo, self.model_repo, self._url(self.model_repo, "model"),
                                  [{"name": n, **info} for n, info in artifacts.items()])

    def _manifest_dict(self, name: str) -> dict | None:
        """The manifest of a data artifact: the local copy when there is one, else downloaded (None if absent)."""
        local = self.local_path(name) / MANIFEST
        try:
            if not local.is_file():
                local = Path(self._call(f"download {name}/{MANIFEST}", lambda: self.api.hf_hub_download(
                    self.dataset_repo, f"{name}/{MANIFEST}", repo_type="dataset",
                    cache_dir=os.environ.get("HF_HUB_CACHE"))))
            return json.loads(local.read_text(encoding="utf-8"))
        except (NOT_FOUND, OSError, ValueError):
            return None

    def _push_adapter(self, name: str, folder: Path) -> str:
        self._ensure_repo(self.model_repo, "model")
        remote = self._tree("model", "main")
        uploads: dict = {adapter_repo_path(rel): folder / rel for rel in _files(folder)}
        if "README.md" not in uploads:
            uploads["README.md"] = cards.fallback_model_card(self.cfg, round_of(name)).encode()
        deletes = [p for p in remote if p not in uploads and p != ".gitattributes"]
        sha = self._commit(self.model_repo, "model", uploads, deletes, f"duo: {name}")
        self._move_ref(self.model_repo, "model", "branch", f"round-{round_of(name)}", sha)
        return sha
