"""Hub transport for the Hub store: the huggingface_hub calls it makes, retried on transient errors.

It knows repos, revisions and paths, never artifacts: which artifact lives where is :mod:`.hub`'s business.
Errors other than not-found become one-line ``DuoError``\\ s; not-found errors pass through for the caller.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ..errors import DuoError

try:
    from httpx2 import TransportError
except ImportError:  # huggingface_hub before 2.x talks through other HTTP clients
    TransportError = OSError

TRANSIENT = {408, 429, 500, 502, 503, 504}
NOT_FOUND = (RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError)
# Seconds the reachability probe waits to connect, and again for an answer: an unreachable Hub
# fails within ~10 s instead of after the client's retries and ours, each of them logged.
PROBE_TIMEOUT_S = 5.0
_reached: set[str] = set()  # endpoints this process has had an answer from


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:2])[:300] if lines else type(err).__name__


def unreachable(endpoint: str) -> str | None:
    """Why ``endpoint`` cannot be reached (a refused connection, an unknown host, no answer within
    ``PROBE_TIMEOUT_S``), or None when it answers at all: any HTTP status, a 5xx included (those
    are retried)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.is_offline_mode():
        return None  # HF_HUB_OFFLINE: the calls themselves read the local cache or say so
    try:  # the client's own session: the same proxies and certificates as every Hub call
        get_session().head(f"{endpoint}/", timeout=PROBE_TIMEOUT_S, follow_redirects=False)
    except (TransportError, OSError) as err:
        return _first_line(err)
    return None


class HubTransport:
    """One authenticated client of the Hub at ``endpoint``; repos it creates are private when ``private``."""

    retry_delays: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)

    def __init__(self, endpoint: str, token: str, namespace: str, private: bool):
        self.endpoint = endpoint
        self.token = token
        self.namespace = namespace
        self.private = private
        self.api = HfApi(endpoint=endpoint, token=token)
        self._trees: dict[tuple[str, str, str], dict] = {}
        self._created: set[str] = set()

    def url(self, repo_id: str, repo_type: str) -> str:
        return f"{self.endpoint}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"

    def call(self, what: str, fn):
        """Run ``fn`` with retries on transient errors (429, 5xx, network);
        other errors become one-line DuoErrors.

        Not-found errors pass through for the caller to handle. A Hub that cannot be reached at all
        (first call, or a network error later) is one line at once, not a round of retries.
        """
        if self.endpoint not in _reached:
            self._reachable(what)
        for attempt in range(len(self.retry_delays) + 1):
            last = attempt == len(self.retry_delays)
            try:
                return fn()
            except NOT_FOUND:
                raise
            except HfHubHTTPError as err:
                status = err.response.status_code if err.response is not None else None
                if status in (401, 403):
                    raise DuoError(f"Hugging Face Hub refused to {what} ({status}): "
                                   "check that HF_TOKEN is valid "
                                   f"and can write to {self.namespace}") from None
                if status not in TRANSIENT or last:
                    raise DuoError(f"Hugging Face Hub: could not {what} ({status}): "
                                   f"{_first_line(err)}") from None
            except (TransportError, LocalEntryNotFoundError) as err:
                self._reachable(what)
                if last:
                    raise DuoError(f"Hugging Face Hub at {self.endpoint}: could not {what}: "
                                   f"{_first_line(err)}") from None
            except ValueError as err:  # the client's own checks: invalid card metadata, malformed replies
                raise DuoError(f"Hugging Face Hub: could not {what}: {_first_line(err)}") from None
            time.sleep(self.retry_delays[attempt])

    def _reachable(self, what: str) -> None:
        """Raise a one-line DuoError unless the endpoint answers (see ``unreachable``)."""
        if why := unreachable(self.endpoint):
            _reached.discard(self.endpoint)
            raise DuoError(f"Hugging Face Hub at {self.endpoint} is unreachable ({why}), "
                           f"so duo could not {what}; check HF_ENDPOINT and the network")
        _reached.add(self.endpoint)

    # -- reading
    def tree(self, repo_id: str, repo_type: str, revision: str) -> dict:
        """``path -> RepoFile`` of a repo revision ({} when the repo or revision is missing);
        cached till a push."""
        key = (repo_id, repo_type, revision)
        if key not in self._trees:
            try:
                entries = self.call(f"list {repo_id}@{revision}", lambda: list(self.api.list_repo_tree(
                    repo_id, recursive=True, revision=revision, repo_type=repo_type)))
                self._trees[key] = {e.path: e for e in entries if hasattr(e, "blob_id")}
            except NOT_FOUND:
                self._trees[key] = {}
        return self._trees[key]

    def sizes_under(self, repo_id: str, repo_type: str, revision: str, prefix: str) -> dict[str, int]:
        """``path -> size`` of the files under folder ``prefix`` now (uncached: other
        threads keep their trees; {} when the repo, revision or folder is missing)."""
        try:
            entries = self.call(
                f"list {repo_id}@{revision}/{prefix}",
                lambda: list(self.api.list_repo_tree(repo_id, path_in_repo=prefix.rstrip("/"),
                                                     recursive=True, revision=revision,
                                                     repo_type=repo_type)))
        except NOT_FOUND:
            return {}
        return {e.path: e.size for e in entries if hasattr(e, "blob_id")}

    def forget_trees(self) -> None:
        """Drop the cached trees: a push changes them."""
        self._trees.clear()

    def branches(self, repo_id: str, repo_type: str) -> list[str]:
        """Branch names of a repo ([] when the repo is missing)."""
        try:
            refs = self.call(f"list the branches of {repo_id}",
                             lambda: self.api.list_repo_refs(repo_id, repo_type=repo_type))
        except NOT_FOUND:
            return []
        return [b.name for b in refs.branches]

    def last_commit(self, repo_id: str, repo_type: str, revision: str, path: str) -> str | None:
        """The commit that last changed file ``path`` as of ``revision``
        (None when the file or repo is missing)."""
        try:
            found = self.call(f"read the history of {repo_id}/{path}", lambda: self.api.get_paths_info(
                repo_id, [path], expand=True, revision=revision, repo_type=repo_type))
        except NOT_FOUND:
            return None
        info = next((f for f in found if f.path == path and getattr(f, "last_commit", None)), None)
        return info.last_commit.oid if info is not None else None

    def head(self, repo_id: str, repo_type: str, revision: str = "main") -> str | None:
        """The commit ``revision`` points at (None when the repo or revision is missing)."""
        try:
            return self.call(f"read the head of {repo_id}@{revision}",
                             lambda: self.api.repo_info(repo_id, repo_type=repo_type, revision=revision).sha)
        except NOT_FOUND:
            return None

    def download(self, repo_id: str, repo_type: str, path: str, what: str,
                 revision: str | None = None) -> Path:
        """One file of a repo, through the HF cache; ``what`` names it in errors."""
        return Path(self.call(f"download {what}", lambda: self.api.hf_hub_download(
            repo_id, path, repo_type=repo_type, revision=revision,
            cache_dir=os.environ.get("HF_HUB_CACHE"))))

    def snapshot(self, repo_id: str, repo_type: str, revision: str, patterns: list[str] | None,
                 what: str) -> Path:
        """The files of a repo revision matching ``patterns`` (all when None), through the HF cache."""
        return Path(self.call(f"download {what} from {repo_id}@{revision}", lambda: snapshot_download(
            repo_id, repo_type=repo_type, revision=revision, allow_patterns=patterns, token=self.token,
            endpoint=self.endpoint, cache_dir=os.environ.get("HF_HUB_CACHE"))))

    # -- writing
    def ensure_repo(self, repo_id: str, repo_type: str) -> None:
        if repo_id not in self._created:
            self.call(f"create {repo_type} repo {repo_id}", lambda: self.api.create_repo(
                repo_id, repo_type=repo_type, private=self.private, exist_ok=True))
            self._created.add(repo_id)

    def commit(self, repo_id: str, repo_type: str, uploads: dict, deletes: list[str], message: str,
               parent: str | None = None, revision: str = "main") -> str | None:
        """Upload ``uploads`` (path in repo -> file or bytes) and delete ``deletes`` on
        branch ``revision`` in one commit; the new commit's sha (``CommitInfo.oid``).

        With ``parent``, the commit is made only if the branch still points there
        (a compare-and-swap): None when another commit came in first.
        """
        def attempt():  # operations are single-use: build them afresh for every try
            ops = [CommitOperationAdd(path_in_repo=p,
                                      path_or_fileobj=src if isinstance(src, bytes) else str(src))
                   for p, src in sorted(uploads.items())]
            ops += [CommitOperationDelete(path_in_repo=p) for p in deletes]
            try:
                return self.api.create_commit(repo_id,
                                              operations=ops,
                                              commit_message=message,
                                              repo_type=repo_type,
                                              revision=revision,
                                              parent_commit=parent).oid
            except HfHubHTTPError as err:
                lost_race = (parent is not None and err.response is not None
                             and err.response.status_code in (409, 412))
                if lost_race:
                    return None
                raise
        return self.call(f"commit to {repo_id}", attempt)

    def read_head_file(self, repo_id: str, repo_type: str, path: str) -> tuple[str | None, dict | None]:
        """(the commit ``main`` points at, the JSON file ``path`` there or None);
        (None, None) without a repo."""
        try:
            head = self.call(f"read the head of {repo_id}",
                             lambda: self.api.repo_info(repo_id, repo_type=repo_type, revision="main").sha)
        except NOT_FOUND:
            return None, None
        try:
            local = self.download(repo_id, repo_type, path, path, revision=head)
        except NOT_FOUND:
            return head, None
        try:
            return head, json.loads(local.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return head, {}

    def move_ref(self, repo_id: str, repo_type: str, kind: str, ref: str, sha: str) -> None:
        """Point ``kind`` (``branch`` or ``tag``) ``ref`` at commit ``sha``
        (delete and recreate when it exists)."""
        refs = self.call(f"list refs of {repo_id}",
                         lambda: self.api.list_repo_refs(repo_id, repo_type=repo_type))
        current = {r.name: r.target_commit for r in (refs.branches if kind == "branch" else refs.tags)}
        if current.get(ref) == sha:
            return
        delete, create = ((self.api.delete_branch, self.api.create_branch) if kind == "branch"
                          else (self.api.delete_tag, self.api.create_tag))
        named = {kind: ref}  # branch=ref or tag=ref
        if ref in current:
            self.call(f"delete {kind} {ref}", lambda: delete(repo_id, **named, repo_type=repo_type))
        self.call(f"create {kind} {ref}", lambda: create(repo_id, **named, revision=sha, repo_type=repo_type,
                                                         exist_ok=True))
