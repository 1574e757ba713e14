"""A fake GitHub REST API for one repository, enough for PyGithub 2.x to open PRs, commit files and dispatch runs.

State: branches (name -> commit sha), commits (sha -> {tree: path -> blob sha, parent, message}), blobs, pull
requests, labels, issue comments, workflow dispatches and the runs they start (``runs``: listed newest first by
``GET .../actions/workflows/{id}/runs``, each titled from the workflow's ``run-name`` -- read from this
repository's round.yml -- with the dispatch's inputs filled in, as GitHub shows it in ``display_title``). URLs in replies are built from the request's Host
header because PyGithub asserts that they point back at the server it was given.

Behaves like GitHub where a bug in the client would otherwise pass unnoticed: 401 on a bad token, 422 when a PR
is opened for a head that already has an open PR or has no commits over its base, 409 on a stale file sha,
422 when a dispatch names an unknown ref or an input the workflow does not declare.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlencode

import yaml

from tests.fakes.http_base import FakeRequest, FakeServer, Reply, json_reply

TOKEN = "ghs_fakeGitHubToken0123456789abcdef"
OWNER, NAME = "acme", "duo-demo"
REPO = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
ROUND_INPUTS = ("config", "round", "samples", "dry-run")
NOW = "2026-01-01T00:00:00Z"
ROUND_YML = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "round.yml"


def round_workflow() -> dict:
    """round.yml as the fake knows it: its inputs, their defaults and its ``run-name`` template."""
    doc = yaml.safe_load(ROUND_YML.read_text()) if ROUND_YML.is_file() else {}
    trigger = (doc.get("on") or doc.get(True) or {}).get("workflow_dispatch") or {}
    defaults = {k: str(v.get("default", "")).lower() if isinstance(v.get("default"), bool) else str(v.get("default", ""))
                for k, v in (trigger.get("inputs") or {}).items()}
    return {"id": 101, "name": doc.get("name", "round"), "inputs": ROUND_INPUTS, "defaults": defaults,
            "run_name": doc.get("run-name")}


def render_run_name(wf: dict, inputs: dict) -> str:
    """GitHub's display title of a dispatched run: the ``run-name`` with ``${{ inputs.x }}`` filled in."""
    template = wf.get("run_name")
    if not template:
        return wf.get("name", "")
    values = {**wf.get("defaults", {}), **inputs}
    return re.sub(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", lambda m: values.get(m.group(1), ""), template)


def iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def blob_sha(data: bytes) -> str:
    """Git's blob id, so a client can compare a local file with the one on a branch."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def gh_error(status: int, message: str) -> Reply:
    return json_reply({"message": message, "documentation_url": "https://docs.github.com/rest"}, status=status)


class FakeGitHub(FakeServer):
    """GitHub's REST API for ``acme/duo-demo`` (see the module docstring)."""

    def __init__(self):
        super().__init__()
        r = REPO
        self.route("GET", rf"{r}", self.get_repo)
        self.route("GET", rf"{r}/branches/(?P<branch>.+)", self.get_branch)
        self.route("GET", rf"{r}/git/refs?/heads/(?P<branch>.+)", self.get_ref)
        self.route("POST", rf"{r}/git/refs", self.create_ref)
        self.route("PATCH", rf"{r}/git/refs/heads/(?P<branch>.+)", self.update_ref)
        self.route("GET", rf"{r}/contents/(?P<path>.+)", self.get_contents)
        self.route("PUT", rf"{r}/contents/(?P<path>.+)", self.put_contents)
        self.route("GET", rf"{r}/pulls", self.list_pulls)
        self.route("POST", rf"{r}/pulls", self.create_pull)
        self.route("GET", rf"{r}/pulls/(?P<number>\d+)", self.get_pull)
        self.route("PATCH", rf"{r}/pulls/(?P<number>\d+)", self.update_pull)
        self.route("GET", rf"{r}/pulls/(?P<number>\d+)/reviews", self.list_reviews)
        self.route("GET", rf"{r}/pulls/(?P<number>\d+)/comments", self.list_review_comments)
        self.route("GET", rf"{r}/labels/(?P<name>[^/]+)", self.get_label)
        self.route("POST", rf"{r}/labels", self.create_label)
        self.route("POST", rf"{r}/issues/(?P<number>\d+)/labels", self.add_labels)
        self.route("GET", rf"{r}/issues/(?P<number>\d+)/comments", self.list_comments)
        self.route("POST", rf"{r}/issues/(?P<number>\d+)/comments", self.create_comment)
        self.route("PATCH", rf"{r}/issues/comments/(?P<id>\d+)", self.edit_comment)
        self.route("GET", rf"{r}/actions/workflows/(?P<wf>[^/]+)", self.get_workflow)
        self.route("POST", rf"{r}/actions/workflows/(?P<wf>[^/]+)/dispatches", self.dispatch)
        self.route("GET", rf"{r}/actions/workflows/(?P<wf>[^/]+)/runs", self.list_runs)

    def reset_state(self) -> None:
        self.tokens = {TOKEN}
        self.default_branch = "main"
        self.blobs: dict[str, bytes] = {}
        self.commits: dict[str, dict] = {}
        self.branches: dict[str, str] = {}
        self.pulls: list[dict] = []
        self.labels: dict[str, dict] = {}
        self.comments: list[dict] = []
        self.reviews: list[dict] = []  # {"pr", "user", "state", "body"}: add with add_review()
        self.review_comments: list[dict] = []  # comments on the diff: add with add_review_comment()
        self.dispatches: list[dict] = []
        self.runs: list[dict] = []
        self.workflows = {"round.yml": round_workflow()}
        self._ids = itertools.count(1001)
        root = self._commit(None, {"README.md": b"# duo demo\n", ".github/workflows/round.yml": b"name: round\n"},
                            "initial commit")
        self.branches["main"] = root

    # -- helpers for tests -----------------------------------------------------------------------------------
    def file(self, branch: str, path: str) -> bytes | None:
        """The content of ``path`` at the head of ``branch`` (None when absent)."""
        tree = self.commits[self.branches[branch]]["tree"]
        return self.blobs[tree[path]] if path in tree else None

    def add_review(self, number: int, user: str, state: str, body: str = "", when: str = NOW) -> None:
        """A review of PR ``number`` by ``user`` (``APPROVED``, ``CHANGES_REQUESTED``, ``COMMENTED``)."""
        self.reviews.append({"pr": int(number), "user": user, "state": state, "body": body, "when": when})

    def add_comment(self, number: int, user: str, body: str, when: str = NOW, association: str = "MEMBER") -> dict:
        """An issue comment on PR ``number`` written by ``user`` (a person, not the token's bot), whose relation to
        the repository is ``association`` (GitHub's ``author_association``: OWNER, MEMBER, COLLABORATOR, NONE...)."""
        c = {"id": next(self._ids), "issue": int(number), "body": body, "user": user, "when": when,
             "association": association}
        self.comments.append(c)
        return c

    def add_review_comment(self, number: int, user: str, body: str, path: str = "README.md",
                           when: str = NOW) -> dict:
        """A review comment (on a line of the diff) of PR ``number`` by ``user``."""
        c = {"id": next(self._ids), "pr": int(number), "body": body, "user": user, "when": when, "path": path}
        self.review_comments.append(c)
        return c

    def close_pull(self, number: int, merged: bool) -> dict:
        """Close PR ``number`` as GitHub does when it is merged (``merged=True``) or closed unmerged."""
        pr = next(p for p in self.pulls if p["number"] == int(number))
        pr.update(state="closed", merged=bool(merged))
        return pr

    def files(self, branch: str) -> dict[str, bytes]:
        return {p: self.blobs[s] for p, s in self.commits[self.branches[branch]]["tree"].items()}

    # -- internals -------------------------------------------------------------------------------------------
    def _commit(self, parent: str | None, changes: dict[str, bytes], message: str) -> str:
        tree = dict(self.commits[parent]["tree"]) if parent else {}
        for path, data in changes.items():
            sha = blob_sha(data)
            self.blobs[sha] = data
            tree[path] = sha
        sha = hashlib.sha1(json.dumps([parent, tree, message, next(self._ids)]).encode()).hexdigest()
        self.commits[sha] = {"tree": tree, "parent": parent, "message": message}
        return sha

    def _authorized(self, req: FakeRequest) -> bool:
        auth = req.header("authorization", "") or ""
        scheme, _, token = auth.partition(" ")
        return scheme.lower() in ("token", "bearer") and token in self.tokens

    def handle(self, req: FakeRequest) -> Reply:
        if not self._authorized(req):
            return gh_error(401, "Bad credentials")
        return super().handle(req)

    def not_found(self, req: FakeRequest) -> Reply:
        return gh_error(404, "Not Found")

    def _check_repo(self, req: FakeRequest) -> Reply | None:
        if (req.params["owner"], req.params["repo"]) != (OWNER, NAME):
            return gh_error(404, "Not Found")
        return None

    def _base(self, req: FakeRequest) -> str:
        return f"{req.host_url}/repos/{OWNER}/{NAME}"

    def _user(self) -> dict:
        return {"login": "duo-bot", "id": 7, "type": "Bot"}

    # -- repository and refs ---------------------------------------------------------------------------------
    def get_repo(self, req: FakeRequest):
        if (bad := self._check_repo(req)) is not None:
            return bad
        return {"id": 4242, "name": NAME, "full_name": f"{OWNER}/{NAME}", "private": True,
                "owner": {"login": OWNER, "id": 1, "type": "Organization"}, "default_branch": self.default_branch,
                "url": self._base(req), "html_url": f"{req.host_url}/{OWNER}/{NAME}"}

    def _branch_json(self, req: FakeRequest, name: str) -> dict:
        sha = self.branches[name]
        return {"name": name, "protected": False,
                "commit": {"sha": sha, "url": f"{self._base(req)}/commits/{sha}"}}

    def _ref_json(self, req: FakeRequest, name: str) -> dict:
        sha = self.branches[name]
        return {"ref": f"refs/heads/{name}", "node_id": f"REF_{name}", "url": f"{self._base(req)}/git/refs/heads/{name}",
                "object": {"sha": sha, "type": "commit", "url": f"{self._base(req)}/git/commits/{sha}"}}

    def get_branch(self, req: FakeRequest):
        name = unquote(req.params["branch"])
        if (bad := self._check_repo(req)) is not None or name not in self.branches:
            return bad or gh_error(404, "Branch not found")
        return self._branch_json(req, name)

    def get_ref(self, req: FakeRequest):
        name = unquote(req.params["branch"])
        if (bad := self._check_repo(req)) is not None or name not in self.branches:
            return bad or gh_error(404, "Not Found")
        return self._ref_json(req, name)

    def create_ref(self, req: FakeRequest):
        body = req.body or {}
        ref, sha = body.get("ref", ""), body.get("sha", "")
        if not ref.startswith("refs/heads/"):
            return gh_error(422, "Reference name must start with refs/heads/ in this fake")
        name = ref[len("refs/heads/"):]
        if name in self.branches:
            return gh_error(422, "Reference already exists")
        if sha not in self.commits:
            return gh_error(422, "Object does not exist")
        with self.lock:
            self.branches[name] = sha
        return json_reply(self._ref_json(req, name), status=201)

    def update_ref(self, req: FakeRequest):
        name = unquote(req.params["branch"])
        sha = (req.body or {}).get("sha", "")
        if name not in self.branches or sha not in self.commits:
            return gh_error(422, "Reference does not exist" if name not in self.branches else "Object does not exist")
        self.branches[name] = sha
        return self._ref_json(req, name)

    # -- contents --------------------------------------------------------------------------------------------
    def _content_json(self, req: FakeRequest, path: str, sha: str, branch: str, with_data: bool) -> dict:
        data = self.blobs[sha]
        out = {"type": "file", "name": path.rsplit("/", 1)[-1], "path": path, "sha": sha, "size": len(data),
               "url": f"{self._base(req)}/contents/{path}?ref={branch}",
               "git_url": f"{self._base(req)}/git/blobs/{sha}",
               "html_url": f"{req.host_url}/{OWNER}/{NAME}/blob/{branch}/{path}",
               "download_url": f"{req.host_url}/raw/{OWNER}/{NAME}/{branch}/{path}"}
        if with_data:
            out.update(encoding="base64", content=base64.encodebytes(data).decode())
        return out

    def get_contents(self, req: FakeRequest):
        path = unquote(req.params["path"])
        branch = req.query.get("ref") or self.default_branch
        if (bad := self._check_repo(req)) is not None or branch not in self.branches:
            return bad or gh_error(404, f"No commit found for the ref {branch}")
        tree = self.commits[self.branches[branch]]["tree"]
        if path not in tree:
            return gh_error(404, "Not Found")
        return self._content_json(req, path, tree[path], branch, with_data=True)

    def put_contents(self, req: FakeRequest):
        path = unquote(req.params["path"])
        body = req.body or {}
        branch = body.get("branch") or self.default_branch
        if branch not in self.branches:
            return gh_error(404, f"Branch {branch} not found")
        if "message" not in body or "content" not in body:
            return gh_error(422, "Invalid request: message and content are required")
        data = base64.b64decode(body["content"])
        with self.lock:
            head = self.branches[branch]
            old = self.commits[head]["tree"].get(path)
            if old is not None and "sha" not in body:
                return gh_error(422, "Invalid request.\n\n\"sha\" wasn't supplied.")
            if old is not None and body["sha"] != old:
                return gh_error(409, f"{path} does not match {body['sha']}")
            commit = self._commit(head, {path: data}, body["message"])
            self.branches[branch] = commit
        sha = blob_sha(data)
        return json_reply({
            "content": self._content_json(req, path, sha, branch, with_data=False),
            "commit": {"sha": commit, "url": f"{self._base(req)}/git/commits/{commit}", "message": body["message"],
                       "html_url": f"{req.host_url}/{OWNER}/{NAME}/commit/{commit}",
                       "author": {"name": "duo-bot", "email": "duo@example.com", "date": NOW},
                       "committer": {"name": "duo-bot", "email": "duo@example.com", "date": NOW},
                       "tree": {"sha": commit}, "parents": [{"sha": head}]},
        }, status=200 if old is not None else 201)

    # -- pull requests ---------------------------------------------------------------------------------------
    def _pull_json(self, req: FakeRequest, pr: dict) -> dict:
        n = pr["number"]
        head_sha = self.branches.get(pr["head"], "0" * 40)
        return {"id": 5000 + n, "number": n, "state": pr["state"], "title": pr["title"], "body": pr["body"],
                "url": f"{self._base(req)}/pulls/{n}", "issue_url": f"{self._base(req)}/issues/{n}",
                "html_url": f"{req.host_url}/{OWNER}/{NAME}/pull/{n}", "user": self._user(),
                "labels": [self.labels[name] for name in pr["labels"]], "merged": bool(pr.get("merged")),
                "draft": False,
                "head": {"ref": pr["head"], "label": f"{OWNER}:{pr['head']}", "sha": head_sha},
                "base": {"ref": pr["base"], "label": f"{OWNER}:{pr['base']}", "sha": self.branches[pr["base"]]},
                "created_at": NOW, "updated_at": NOW}

    def _pull(self, number: str) -> dict | None:
        return next((p for p in self.pulls if p["number"] == int(number)), None)

    def list_pulls(self, req: FakeRequest):
        if (bad := self._check_repo(req)) is not None:
            return bad
        state = req.query.get("state", "open")
        head = req.query.get("head")
        out = [p for p in self.pulls if state == "all" or p["state"] == state]
        if head:
            owner, _, branch = head.partition(":")
            out = [p for p in out if owner == OWNER and p["head"] == branch]
        return [self._pull_json(req, p) for p in out]

    def create_pull(self, req: FakeRequest):
        body = req.body or {}
        head, base = body.get("head", ""), body.get("base", "")
        head = head.split(":", 1)[-1]
        if head not in self.branches or base not in self.branches:
            return gh_error(422, "Validation Failed: head or base branch not found")
        if any(p["head"] == head and p["state"] == "open" for p in self.pulls):
            return gh_error(422, f"A pull request already exists for {OWNER}:{head}.")
        if self.commits[self.branches[head]]["tree"] == self.commits[self.branches[base]]["tree"]:
            return gh_error(422, f"No commits between {base} and {head}")
        with self.lock:
            pr = {"number": len(self.pulls) + 1, "title": body.get("title", ""), "body": body.get("body") or "",
                  "head": head, "base": base, "state": "open", "labels": []}
            self.pulls.append(pr)
        return json_reply(self._pull_json(req, pr), status=201)

    def get_pull(self, req: FakeRequest):
        pr = self._pull(req.params["number"])
        return self._pull_json(req, pr) if pr else gh_error(404, "Not Found")

    def update_pull(self, req: FakeRequest):
        pr = self._pull(req.params["number"])
        if pr is None:
            return gh_error(404, "Not Found")
        for key in ("title", "body", "state", "base"):
            if key in (req.body or {}):
                pr[key] = req.body[key]
        return self._pull_json(req, pr)

    def list_reviews(self, req: FakeRequest):
        n = int(req.params["number"])
        if self._pull(str(n)) is None:
            return gh_error(404, "Not Found")
        return [{"id": 7000 + i, "user": {"login": r["user"], "id": 100 + i, "type": "User"}, "state": r["state"],
                 "body": r.get("body", ""), "submitted_at": r.get("when", NOW), "commit_id": "0" * 40,
                 "author_association": r.get("association", "MEMBER"),
                 "html_url": f"{req.host_url}/{OWNER}/{NAME}/pull/{n}#pullrequestreview-{7000 + i}"}
                for i, r in enumerate(self.reviews) if r["pr"] == n]

    def list_review_comments(self, req: FakeRequest):
        n = int(req.params["number"])
        if self._pull(str(n)) is None:
            return gh_error(404, "Not Found")
        return [{"id": c["id"], "body": c["body"], "path": c["path"], "line": 1, "side": "RIGHT",
                 "user": {"login": c["user"], "id": 300, "type": "User"}, "created_at": c["when"],
                 "updated_at": c["when"], "commit_id": "0" * 40, "pull_request_review_id": None,
                 "author_association": c.get("association", "MEMBER"),
                 "url": f"{self._base(req)}/pulls/comments/{c['id']}",
                 "html_url": f"{req.host_url}/{OWNER}/{NAME}/pull/{n}#discussion_r{c['id']}",
                 "pull_request_url": f"{self._base(req)}/pulls/{n}"}
                for c in self.review_comments if c["pr"] == n]

    # -- labels and comments ---------------------------------------------------------------------------------
    def get_label(self, req: FakeRequest):
        label = self.labels.get(unquote(req.params["name"]))
        return label if label else gh_error(404, "Not Found")

    def create_label(self, req: FakeRequest):
        body = req.body or {}
        name = body.get("name", "")
        if not name or name in self.labels:
            return gh_error(422, "Validation Failed: already_exists" if name else "Validation Failed: name")
        label = {"id": next(self._ids), "name": name, "color": body.get("color", "ededed"),
                 "description": body.get("description"), "url": f"{self._base(req)}/labels/{name}"}
        self.labels[name] = label
        return json_reply(label, status=201)

    def add_labels(self, req: FakeRequest):
        pr = self._pull(req.params["number"])
        if pr is None:
            return gh_error(404, "Not Found")
        body = req.body or {}
        names = body if isinstance(body, list) else body.get("labels", [])  # GitHub takes both forms
        for name in names:
            if name not in self.labels:  # GitHub creates unknown labels on the fly
                self.labels[name] = {"id": next(self._ids), "name": name, "color": "ededed", "description": None,
                                     "url": f"{self._base(req)}/labels/{name}"}
            if name not in pr["labels"]:
                pr["labels"].append(name)
        return [self.labels[n] for n in pr["labels"]]

    def _comment_json(self, req: FakeRequest, c: dict) -> dict:
        user = {"login": c["user"], "id": 200, "type": "User"} if c.get("user") else self._user()
        when = c.get("when", NOW)
        return {"id": c["id"], "body": c["body"], "user": user, "created_at": when, "updated_at": when,
                "author_association": c.get("association", "NONE" if not c.get("user") else "MEMBER"),
                "url": f"{self._base(req)}/issues/comments/{c['id']}",
                "html_url": f"{req.host_url}/{OWNER}/{NAME}/pull/{c['issue']}#issuecomment-{c['id']}",
                "issue_url": f"{self._base(req)}/issues/{c['issue']}"}

    def list_comments(self, req: FakeRequest):
        n = int(req.params["number"])
        return [self._comment_json(req, c) for c in self.comments if c["issue"] == n]

    def create_comment(self, req: FakeRequest):
        n = int(req.params["number"])
        if self._pull(str(n)) is None:
            return gh_error(404, "Not Found")
        c = {"id": next(self._ids), "issue": n, "body": (req.body or {}).get("body", "")}
        self.comments.append(c)
        return json_reply(self._comment_json(req, c), status=201)

    def edit_comment(self, req: FakeRequest):
        c = next((c for c in self.comments if c["id"] == int(req.params["id"])), None)
        if c is None:
            return gh_error(404, "Not Found")
        c["body"] = (req.body or {}).get("body", c["body"])
        return self._comment_json(req, c)

    # -- workflows -------------------------------------------------------------------------------------------
    def _workflow(self, key: str) -> tuple[str, dict] | None:
        key = unquote(key)
        for file, wf in self.workflows.items():
            if key in (file, str(wf["id"])):
                return file, wf
        return None

    def get_workflow(self, req: FakeRequest):
        found = self._workflow(req.params["wf"])
        if found is None:
            return gh_error(404, "Not Found")
        file, wf = found
        return {"id": wf["id"], "name": file.rsplit(".", 1)[0], "path": f".github/workflows/{file}",
                "state": "active", "url": f"{self._base(req)}/actions/workflows/{wf['id']}",
                "html_url": f"{req.host_url}/{OWNER}/{NAME}/actions/workflows/{file}",
                "badge_url": f"{req.host_url}/{OWNER}/{NAME}/workflows/{file}/badge.svg",
                "created_at": NOW, "updated_at": NOW}

    def dispatch(self, req: FakeRequest):
        found = self._workflow(req.params["wf"])
        if found is None:
            return gh_error(404, "Not Found")
        file, wf = found
        body = req.body or {}
        ref = body.get("ref", "")
        if ref.removeprefix("refs/heads/") not in self.branches:
            return gh_error(422, f"No ref found for: {ref}")
        inputs = body.get("inputs") or {}
        unexpected = sorted(set(inputs) - set(wf["inputs"]))
        if unexpected:
            return gh_error(422, f"Unexpected inputs provided: {unexpected}")
        if any(not isinstance(v, str) for v in inputs.values()):
            return gh_error(422, "inputs must be strings in this fake (GitHub coerces them to strings)")
        with self.lock:
            self.dispatches.append({"workflow": file, "ref": ref, "inputs": dict(inputs)})
            self.runs.append({"id": next(self._ids), "workflow": file, "ref": ref.removeprefix("refs/heads/"),
                              "title": render_run_name(wf, inputs), "event": "workflow_dispatch",
                              "created_at": iso_now(), "number": len(self.runs) + 1})
        return Reply(204, b"", {})

    def _run_json(self, req: FakeRequest, run: dict) -> dict:
        wf = self.workflows.get(run["workflow"], {"id": 0})
        head = self.branches.get(run["ref"], "0" * 40)
        url = f"{self._base(req)}/actions/runs/{run['id']}"
        return {"id": run["id"], "name": wf.get("name", "round"), "node_id": f"WFR_{run['id']}",
                "head_branch": run["ref"], "head_sha": head, "path": f".github/workflows/{run['workflow']}",
                "display_title": run["title"], "run_number": run["number"], "run_attempt": 1,
                "event": run["event"], "status": "queued", "conclusion": None, "workflow_id": wf["id"],
                "url": url, "html_url": f"{req.host_url}/{OWNER}/{NAME}/actions/runs/{run['id']}",
                "jobs_url": f"{url}/jobs", "logs_url": f"{url}/logs", "cancel_url": f"{url}/cancel",
                "rerun_url": f"{url}/rerun", "workflow_url": f"{self._base(req)}/actions/workflows/{wf['id']}",
                "created_at": run["created_at"], "updated_at": run["created_at"],
                "run_started_at": run["created_at"], "actor": self._user(), "triggering_actor": self._user(),
                "pull_requests": []}

    @staticmethod
    def _created_matches(created: str, query: str) -> bool:
        """GitHub's ``created`` filter (search syntax): ``>=T``, ``>T``, ``<=T``, ``<T``, ``A..B`` or a date."""
        for op, test in ((">=", lambda a, b: a >= b), ("<=", lambda a, b: a <= b), (">", lambda a, b: a > b),
                         ("<", lambda a, b: a < b)):
            if query.startswith(op):
                return test(created, query[len(op):])
        if ".." in query:
            lo, hi = query.split("..", 1)
            return (lo in ("", "*") or created >= lo) and (hi in ("", "*") or created[:len(hi)] <= hi)
        return created.startswith(query)

    def list_runs(self, req: FakeRequest):
        found = self._workflow(req.params["wf"])
        if (bad := self._check_repo(req)) is not None or found is None:
            return bad or gh_error(404, "Not Found")
        file, _ = found
        out = [r for r in reversed(self.runs) if r["workflow"] == file]  # newest first, as GitHub lists them
        if req.query.get("event"):
            out = [r for r in out if r["event"] == req.query["event"]]
        if req.query.get("branch"):
            out = [r for r in out if r["ref"] == req.query["branch"]]
        if req.query.get("created"):
            out = [r for r in out if self._created_matches(r["created_at"], req.query["created"])]
        per_page = min(int(req.query.get("per_page", 30)), 100)
        page = int(req.query.get("page", 1))
        body = {"total_count": len(out), "workflow_runs": [self._run_json(req, r)
                                                           for r in out[(page - 1) * per_page:page * per_page]]}
        headers = {}
        if page * per_page < len(out):
            query = urlencode({**req.query, "page": page + 1, "per_page": per_page})
            headers["Link"] = f'<{self._base(req)}/actions/workflows/{req.params["wf"]}/runs?{query}>; rel="next"'
        return json_reply(body, headers=headers)
