"""A fake Hugging Face Hub that the real ``huggingface_hub`` client (and ``datasets``) talk to over HTTP.

It keeps every repo in memory as git-like history: each commit is a full snapshot ``path -> Blob``, branches and
tags point at commits, so any revision can be read back. Implemented (shapes as the real Hub answers them):

- ``POST /api/repos/create`` (409 when it exists), ``DELETE /api/repos/delete``, ``GET /api/whoami-v2``,
  ``POST /api/validate-yaml``;
- ``GET /api/{models|datasets}/{repo}[/revision/{rev}]`` (sha, siblings; ``blobs=1`` adds sizes and LFS info);
- ``POST .../preupload/{rev}`` (``uploadMode`` "lfs" for binary files, LFS-tracked extensions or files over
  ``lfs_threshold`` bytes, else "regular"; ``oid`` of the file already there), the LFS batch API
  ``POST /{datasets/}{repo}.git/info/lfs/objects/batch`` with a presigned-style ``PUT`` and a verify step;
- ``POST .../commit/{rev}`` (ndjson: header, file, lfsFile, deletedFile, deletedFolder; ``parentCommit`` checked);
- ``GET .../tree/{rev}[/{path}]`` (``recursive``), ``POST .../paths-info/{rev}`` (``expand``: ``lastCommit``),
  ``GET .../commits/{rev}``;
- ``HEAD|GET /{datasets/}{repo}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag`` (and ``X-Linked-Etag`` /
  ``X-Linked-Size`` for LFS files), ``Range``;
- ``POST|DELETE .../branch/{branch}``, ``POST .../tag/{rev}``, ``DELETE .../tag/{tag}``, ``GET .../refs``.

Errors carry ``X-Error-Code`` (RepoNotFound, RevisionNotFound, EntryNotFound) as the client expects. Writes need
``Authorization: Bearer <token>`` with a token in ``tokens``; private repos need it for reads too.
``fail_next(method, path_regex, status, times)`` makes the next matching requests fail (deterministic faults).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import parse_qs, unquote

import yaml

from .http_base import FakeRequest, FakeServer, Reply, bytes_reply, json_reply

FAKE_TOKEN = "hf_fake_token_for_tests"
FAKE_USER = "duo-tester"
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.gguf", "*.parquet", "*.arrow", "*.h5",
                "*.onnx", "*.msgpack", "*.zip", "*.gz", "*.tar", "*.npy", "*.npz", "*.pkl", "*.model")
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
TYPES = "models|datasets|spaces"
REPO = r"(?P<repo>[^/]+/[^/]+)"


def git_hash(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Blob:
    data: bytes
    lfs: bool = False

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def oid(self) -> str:
        """The git object id: of the content for a regular file, of the pointer file for an LFS file."""
        return git_hash(lfs_pointer(self.sha256, len(self.data)) if self.lfs else self.data)

    def tree_entry(self, path: str) -> dict:
        entry = {"type": "file", "oid": self.oid, "size": len(self.data), "path": path}
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": len(self.data),
                            "pointerSize": len(lfs_pointer(self.sha256, len(self.data)))}
        return entry


@dataclass
class Commit:
    sha: str
    files: dict  # path -> Blob
    parent: str | None
    title: str
    message: str = ""
    date: str = field(default_factory=now_iso)


@dataclass
class Repo:
    type: str  # model | dataset | space
    id: str
    private: bool
    commits: dict = field(default_factory=dict)  # sha -> Commit
    branches: dict = field(default_factory=dict)  # name -> sha
    tags: dict = field(default_factory=dict)  # name -> sha
    lfs: dict = field(default_factory=dict)  # sha256 -> bytes
    created: str = field(default_factory=now_iso)

    def resolve(self, rev: str) -> str | None:
        if rev in self.branches:
            return self.branches[rev]
        if rev in self.tags:
            return self.tags[rev]
        if rev in self.commits:
            return rev
        return None


class HubError(Exception):
    def __init__(self, reply: Reply):
        self.reply = reply


def hub_error(status: int, message: str, code: str | None = None) -> HubError:
    headers = {"X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    return HubError(json_reply({"error": message}, status=status, headers=headers))


class FakeHub(FakeServer):
    """The fake Hub; see the module docstring."""

    lfs_threshold = 10 * 1024 * 1024

    def __init__(self):
        super().__init__()
        self.tokens = {FAKE_TOKEN}
        self._counter = itertools.count(1)
        api = rf"/api/(?P<type>{TYPES})/{REPO}"
        prefix = r"(?:(?P<prefix>datasets|spaces)/)?"
        for method, pattern, handler in [
            ("GET", r"/api/whoami-v2", self.whoami),
            ("GET", r"/api/agent-harnesses", lambda req: {"standardEnvVars": [], "harnesses": {}}),
            ("POST", r"/api/repos/create", self.create_repo),
            ("DELETE", r"/api/repos/delete", self.delete_repo),
            ("POST", r"/api/validate-yaml", self.validate_yaml),
            ("GET", api + r"(?:/revision/(?P<rev>.+))?", self.repo_info),
            ("POST", api + r"/preupload/(?P<rev>.+)", self.preupload),
            ("POST", api + r"/commit/(?P<rev>.+)", self.commit),
            ("GET", api + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", self.tree),
            ("POST", api + r"/paths-info/(?P<rev>.+)", self.paths_info),
            ("GET", api + r"/commits/(?P<rev>.+)", self.list_commits),
            ("GET", api + r"/refs", self.refs),
            ("POST", api + r"/branch/(?P<name>.+)", self.create_branch),
            ("DELETE", api + r"/branch/(?P<name>.+)", self.delete_branch),
            ("POST", api + r"/tag/(?P<rev>.+)", self.create_tag),
            ("DELETE", api + r"/tag/(?P<name>.+)", self.delete_tag),
            ("POST", rf"/{prefix}{REPO}\.git/info/lfs/objects/batch", self.lfs_batch),
            ("PUT", rf"/lfs-upload/(?P<type>{TYPES})/{REPO}/(?P<oid>[0-9a-f]{{64}})", self.lfs_put),
            ("POST", rf"/lfs-verify/(?P<type>{TYPES})/{REPO}", self.lfs_verify),
            ("HEAD", rf"/{prefix}{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", self.resolve),
            ("GET", rf"/{prefix}{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", self.resolve),
        ]:
            self.route(method, pattern, self._guard(handler))

    def reset_state(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self._failures: list[dict] = []

    # -- helpers for tests -------------------------------------------------------------------------------------
    def fail_next(self, method: str, path: str, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` requests whose path matches the regex ``path`` with ``status``."""
        with self.lock:
            if not self._failures:
                self.add_hook(self._failure_hook)
            self._failures.append({"method": method.upper(), "path": re.compile(path), "status": status,
                                   "left": times})

    def _failure_hook(self, req: FakeRequest) -> Reply | None:
        with self.lock:
            for f in self._failures:
                if f["left"] > 0 and f["method"] == req.method and f["path"].search(req.path):
                    f["left"] -= 1
                    req.fault = str(f["status"])
                    return json_reply({"error": f"injected {f['status']} (fake)"}, status=f["status"])
        return None

    def commits(self, method_path: str = r"/commit/") -> list[dict]:
        """Logged commit requests that succeeded."""
        return [e for e in self.requests("POST", method_path) if e["status"] == 200]

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def files(self, repo_id: str, repo_type: str = "model", rev: str = "main") -> dict[str, bytes]:
        repo = self.repo(repo_id, repo_type)
        return {p: b.data for p, b in repo.commits[repo.resolve(rev)].files.items()}

    # -- plumbing ----------------------------------------------------------------------------------------------
    def _guard(self, handler):
        def run(req: FakeRequest):
            req.params = {k: unquote(v) if v is not None else None for k, v in req.params.items()}
            try:
                with self.lock:
                    return handler(req)
            except HubError as err:
                return err.reply
        return run

    def _authorized(self, req: FakeRequest) -> bool:
        auth = req.header("authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.tokens

    def _require_auth(self, req: FakeRequest) -> None:
        auth = req.header("authorization", "")
        if not auth:
            raise hub_error(401, "You must be authenticated to access this resource")
        if not self._authorized(req):
            raise hub_error(401, "Invalid credentials in Authorization header")

    def _repo(self, req: FakeRequest, write: bool = False) -> Repo:
        p = req.params
        rtype = p["type"][:-1] if p.get("type") else (p.get("prefix") or "models")[:-1]
        if write:
            self._require_auth(req)
        repo = self.repos.get((rtype, p["repo"]))
        if repo is None or (repo.private and not self._authorized(req)):
            raise hub_error(404 if repo is None else 401, "Repository not found", "RepoNotFound")
        return repo

    def _commit_at(self, repo: Repo, rev: str) -> Commit:
        sha = repo.resolve(rev)
        if sha is None:
            raise hub_error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return repo.commits[sha]

    def _new_commit(self, repo: Repo, files: dict, parent: str | None, title: str, message: str = "") -> Commit:
        seed = f"{repo.type}/{repo.id}:{parent}:{title}:{next(self._counter)}"
        sha = hashlib.sha1(seed.encode()).hexdigest()
        commit = Commit(sha=sha, files=files, parent=parent, title=title, message=message)
        repo.commits[sha] = commit
        return commit

    def _url(self, req: FakeRequest, repo: Repo) -> str:
        prefix = "" if repo.type == "model" else f"{repo.type}s/"
        return f"{req.host_url}/{prefix}{repo.id}"

    # -- account, repos ----------------------------------------------------------------------------------------
    def whoami(self, req: FakeRequest):
        self._require_auth(req)
        return {"type": "user", "id": "fake-user-id", "name": FAKE_USER, "fullname": "Duo Tester", "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "fake", "role": "write"}}}

    def create_repo(self, req: FakeRequest):
        self._require_auth(req)
        body = req.body or {}
        rtype = body.get("type") or "model"
        repo_id = f"{body.get('organization') or FAKE_USER}/{body['name']}"
        private = body.get("visibility", "private" if body.get("private") else "public") == "private"
        if (rtype, repo_id) in self.repos:
            url = self._url(req, self.repos[(rtype, repo_id)])
            return json_reply({"error": f"You already created this {rtype} repo", "url": url}, status=409)
        repo = Repo(type=rtype, id=repo_id, private=private)
        first = self._new_commit(repo, {".gitattributes": Blob(GITATTRIBUTES)}, None, "initial commit")
        repo.branches["main"] = first.sha
        self.repos[(rtype, repo_id)] = repo
        return {"url": self._url(req, repo), "name": repo_id, "id": f"fake-{len(self.repos)}"}

    def delete_repo(self, req: FakeRequest):
        self._require_auth(req)
        body = req.body or {}
        key = (body.get("type") or "model", f"{body.get('organization') or FAKE_USER}/{body['name']}")
        if key not in self.repos:
            raise hub_error(404, "Repository not found", "RepoNotFound")
        del self.repos[key]
        return bytes_reply(b"", content_type="text/plain")

    def validate_yaml(self, req: FakeRequest):
        content = (req.body or {}).get("content", "")
        m = re.match(r"^---\n(.*?)\n---", content, re.DOTALL)
        if m:
            try:
                meta = yaml.safe_load(m.group(1))
            except yaml.YAMLError as exc:
                return json_reply({"errors": [{"message": f"invalid YAML: {exc}"}], "warnings": []}, status=400)
            if meta is not None and not isinstance(meta, dict):
                return json_reply({"errors": [{"message": "metadata must be a mapping"}], "warnings": []}, status=400)
        return {"errors": [], "warnings": []}

    def repo_info(self, req: FakeRequest):
        repo = self._repo(req)
        commit = self._commit_at(repo, req.params.get("rev") or "main")
        blobs = req.query.get("blobs") in ("1", "True", "true")
        siblings = []
        for path, blob in sorted(commit.files.items()):
            sib = {"rfilename": path}
            if blobs:
                sib.update(size=len(blob.data), blobId=blob.oid)
                if blob.lfs:
                    sib["lfs"] = blob.tree_entry(path)["lfs"] | {"sha256": blob.sha256}
            siblings.append(sib)
        card = None
        if "README.md" in commit.files:
            m = re.match(r"^---\n(.*?)\n---", commit.files["README.md"].data.decode(errors="replace"), re.DOTALL)
            card = yaml.safe_load(m.group(1)) if m else None
        return {"_id": f"fake-{repo.id}", "id": repo.id, "author": repo.id.split("/")[0], "sha": commit.sha,
                "lastModified": commit.date, "createdAt": repo.created, "private": repo.private, "gated": False,
                "disabled": False, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings,
                "cardData": card}

    # -- uploads -----------------------------------------------------------------------------------------------
    def _upload_mode(self, path: str, size: int, sample: bytes) -> str:
        if size >= self.lfs_threshold or b"\0" in sample:
            return "lfs"
        return "lfs" if any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], p) for p in LFS_PATTERNS) else "regular"

    def preupload(self, req: FakeRequest):
        repo = self._repo(req, write=True)
        head = self._commit_at(repo, req.params["rev"])
        out = []
        for f in (req.body or {}).get("files", []):
            sample = base64.b64decode(f.get("sample") or "")
            mode = self._upload_mode(f["path"], int(f["size"]), sample)
            existing = head.files.get(f["path"])
            oid = None if existing is None else (existing.sha256 if existing.lfs else existing.oid)
            out.append({"path": f["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        return {"files": out, "commitOid": head.sha}

    def lfs_batch(self, req: FakeRequest):
        repo = self._repo(req, write=True)
        body = req.body if isinstance(req.body, dict) else json.loads(req.raw)
        objects = []
        for obj in body.get("objects", []):
            item = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in repo.lfs:
                base = f"{req.host_url}"
                item["actions"] = {
                    "upload": {"href": f"{base}/lfs-upload/{repo.type}s/{repo.id}/{obj['oid']}", "header": {}},
                    "verify": {"href": f"{base}/lfs-verify/{repo.type}s/{repo.id}", "header": {}},
                }
            objects.append(item)
        return json_reply({"transfer": "basic", "objects": objects}, headers={"Content-Type":
                                                                             "application/vnd.git-lfs+json"})

    def lfs_put(self, req: FakeRequest):
        repo = self.repos.get((req.params["type"][:-1], req.params["repo"]))
        if repo is None:
            raise hub_error(404, "Repository not found", "RepoNotFound")
        if hashlib.sha256(req.raw).hexdigest() != req.params["oid"]:
            raise hub_error(400, "uploaded content does not match its sha256 oid")
        repo.lfs[req.params["oid"]] = req.raw
        return bytes_reply(b"", headers={"ETag": f'"{hashlib.md5(req.raw).hexdigest()}"'})

    def lfs_verify(self, req: FakeRequest):
        repo = self._repo(req, write=True)
        body = req.body or {}
        data = repo.lfs.get(body.get("oid"))
        if data is None or len(data) != body.get("size"):
            raise hub_error(404, f"LFS object {body.get('oid')} not found or wrong size")
        return {"success": True}

    def commit(self, req: FakeRequest):
        repo = self._repo(req, write=True)
        branch = req.params["rev"]
        if req.query.get("create_pr") == "1":
            raise hub_error(400, "pull requests are not supported by the fake Hub")
        if branch not in repo.branches:
            raise hub_error(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        head = repo.commits[repo.branches[branch]]
        lines = [json.loads(line) for line in req.raw.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise hub_error(400, "the first ndjson line must be the commit header")
        header = lines[0]["value"]
        if header.get("parentCommit") and header["parentCommit"] != head.sha:
            raise hub_error(412, "A commit has happened since. Please refresh and try again.")
        files = dict(head.files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            path = value["path"]
            if key == "file":
                data = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else \
                    value["content"].encode()
                files[path] = Blob(data)
            elif key == "lfsFile":
                data = repo.lfs.get(value["oid"])
                if data is None:
                    raise hub_error(422, f"LFS object {value['oid']} for {path} was never uploaded")
                files[path] = Blob(data, lfs=True)
            elif key == "deletedFile":
                if path not in files:
                    raise hub_error(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del files[path]
            elif key == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                gone = [p for p in files if p.startswith(prefix)]
                if not gone:
                    raise hub_error(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                for p in gone:
                    del files[p]
            else:
                raise hub_error(400, f"unknown commit operation {key!r}")
        commit = self._new_commit(repo, files, head.sha, header.get("summary", ""), header.get("description", ""))
        repo.branches[branch] = commit.sha
        return {"success": True, "commitOid": commit.sha, "commitUrl": f"{self._url(req, repo)}/commit/{commit.sha}",
                "pullRequestUrl": None, "hookOutput": ""}

    # -- reading -----------------------------------------------------------------------------------------------
    def _listing(self, commit: Commit, path: str, recursive: bool) -> list[dict]:
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in commit.files) and path.strip("/") not in commit.files:
            raise hub_error(404, f"{path} does not exist", "EntryNotFound")
        entries: dict[str, dict] = {}
        for p, blob in commit.files.items():
            if not p.startswith(prefix):
                continue
            parts = p[len(prefix):].split("/")
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                if depth == 1 or recursive:
                    entries.setdefault(folder, {"type": "directory", "oid": git_hash(folder.encode()), "size": 0,
                                                "path": folder})
                if not recursive:
                    break
            if len(parts) == 1 or recursive:
                entries[p] = blob.tree_entry(p)
        return [entries[k] for k in sorted(entries)]

    def tree(self, req: FakeRequest):
        repo = self._repo(req)
        commit = self._commit_at(repo, req.params["rev"])
        recursive = req.query.get("recursive") in ("1", "True", "true")
        return self._listing(commit, req.params.get("path") or "", recursive)

    def paths_info(self, req: FakeRequest):
        repo = self._repo(req)
        commit = self._commit_at(repo, req.params["rev"])
        body = req.body if isinstance(req.body, dict) else {}
        if not body and req.raw:  # form-encoded: paths=a&paths=b
            body = parse_qs(req.raw.decode())
        expand = str((body.get("expand") or ["false"])[0] if isinstance(body.get("expand"), list)
                     else body.get("expand")).lower() in ("1", "true")
        out = []
        for path in body.get("paths", []):
            path = path.strip("/")
            if path in commit.files:
                entry = commit.files[path].tree_entry(path)
                if expand:
                    entry["lastCommit"] = self._last_commit(repo, commit, path)
                out.append(entry)
            elif any(p.startswith(path + "/") for p in commit.files):
                out.append({"type": "directory", "oid": git_hash(path.encode()), "size": 0, "path": path})
        return out

    @staticmethod
    def _last_commit(repo: Repo, commit: Commit, path: str) -> dict:
        """The newest commit, from ``commit`` back, that changed the file ``path`` (as ``expand=True`` shows it)."""
        while commit.parent and repo.commits[commit.parent].files.get(path) == commit.files.get(path):
            commit = repo.commits[commit.parent]
        return {"id": commit.sha, "title": commit.title, "date": commit.date}

    def list_commits(self, req: FakeRequest):
        repo = self._repo(req)
        commit = self._commit_at(repo, req.params["rev"])
        out = []
        while commit is not None:
            out.append({"id": commit.sha, "title": commit.title, "message": commit.message, "date": commit.date,
                        "authors": [{"user": FAKE_USER}]})
            commit = repo.commits.get(commit.parent) if commit.parent else None
        return out

    def refs(self, req: FakeRequest):
        repo = self._repo(req)

        def refs_of(kind: str, names: dict) -> list[dict]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": s} for n, s in sorted(names.items())]
        return {"branches": refs_of("heads", repo.branches), "converts": [], "tags": refs_of("tags", repo.tags),
                "pullRequests": []}

    def create_branch(self, req: FakeRequest):
        repo = self._repo(req, write=True)
        name = req.params["name"]
        if name in repo.branches:
            raise hub_error(409, f"Reference already exists: refs/heads/{name}")
        start = (req.body or {}).get("startingPoint") or "main"
        repo.branches[name] = self._commit_at(repo, start).sha
        return {}

    def delete_branch(self, req: FakeRequest):
        repo = self._repo(req, write=True)
        name = req.params["name"]
        if name == "main":
            raise hub_error(403, "Cannot delete the main branch")
        if repo.branches.pop(name, None) is None:
            raise hub_error(404, f"Invalid rev id: {name}", "RevisionNotFound")
        return {}

    def create_tag(self, req: FakeRequest):
        repo = self._repo(req, write=True)
        tag = (req.body or {}).get("tag")
        if not tag:
            raise hub_error(400, "missing tag name")
        if tag in repo.tags:
            raise hub_error(409, f"Reference already exists: refs/tags/{tag}")
        repo.tags[tag] = self._commit_at(repo, req.params["rev"]).sha
        return {}

    def delete_tag(self, req: FakeRequest):
        repo = self._repo(req, write=True)
        if repo.tags.pop(req.params["name"], None) is None:
            raise hub_error(404, f"Invalid rev id: {req.params['name']}", "RevisionNotFound")
        return {}

    def resolve(self, req: FakeRequest):
        repo = self._repo(req)
        commit = self._commit_at(repo, req.params["rev"])
        path = req.params["path"]
        blob = commit.files.get(path)
        if blob is None:
            raise hub_error(404, f"Entry not found: {path}", "EntryNotFound")
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{blob.oid}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(len(blob.data))})
        data = blob.data
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", req.header("range") or "")
        if m:
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return Reply(206, data[start:end + 1], headers)
        return Reply(200, data, headers)
