"""GitHub operations the report and decide stages need, through PyGithub.

Token from ``GITHUB_TOKEN``, repository from ``GITHUB_REPOSITORY`` (``owner/name``), API base from
``DUO_GITHUB_API_URL`` or ``GITHUB_API_URL`` (default https://api.github.com). Every GitHub error
reaches the user as one DuoError line naming the operation; the token never appears in it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from .errors import DuoError

if TYPE_CHECKING:
    from github.PullRequest import PullRequest
    from github.Repository import Repository

DEFAULT_API = "https://api.github.com"
LABEL_COLOR = "0e8a16"
MAX_BODY = 65000  # GitHub rejects issue and PR bodies over 65536 characters


def api_url() -> str:
    """The REST API base: ``DUO_GITHUB_API_URL`` (an action input; runners reset ``GITHUB_*``
    variables a workflow sets), else the runner's ``GITHUB_API_URL``, else api.github.com."""
    return os.environ.get("DUO_GITHUB_API_URL") or os.environ.get("GITHUB_API_URL") or DEFAULT_API


@contextmanager
def github_errors(action: str) -> Iterator[None]:
    """Turn a PyGithub exception raised while doing ``action`` into a one-line DuoError."""
    from github import BadCredentialsException, GithubException

    try:
        yield
    except BadCredentialsException:
        raise DuoError(f"GitHub {action}: 401 Bad credentials; check that GITHUB_TOKEN is valid") from None
    except GithubException as exc:
        data = exc.data if isinstance(exc.data, dict) else {}
        message = data.get("message") or str(exc.data or "")
        raise DuoError(f"GitHub {action}: {exc.status} {message}".strip()) from None
    except OSError as exc:
        raise DuoError(f"GitHub {action}: cannot reach {api_url()} "
                       f"({exc})") from None


def connect() -> Repository:
    """The repository named by ``GITHUB_REPOSITORY``, authenticated with ``GITHUB_TOKEN``."""
    from github import Auth, Github

    token = os.environ.get("GITHUB_TOKEN")
    name = os.environ.get("GITHUB_REPOSITORY")
    missing = [v for v, val in (("GITHUB_TOKEN", token), ("GITHUB_REPOSITORY", name)) if not val]
    if missing:
        raise DuoError(f"GitHub access needs {' and '.join(missing)} in the environment "
                       "(Actions sets both; GITHUB_REPOSITORY is owner/name)")
    base = api_url().rstrip("/")
    # PyGithub paces requests (0.25 s, 1 s between writes) for GitHub's secondary rate limits; a
    # server on this machine (a test fake, a local proxy) has none, and pacing would only slow
    # every call.
    local = urlparse(base).hostname in ("127.0.0.1", "localhost", "::1")
    pacing = {"seconds_between_requests": None, "seconds_between_writes": None} if local else {}
    client = Github(base_url=base, auth=Auth.Token(token), retry=_retry(local), timeout=30, **pacing)
    with github_errors(f"open repository {name}"):
        return client.get_repo(name)


def _retry(local: bool):
    """Retry reads on 5xx (a 502 from GitHub is common and harmless); writes are not retried, as a POST that
    reached GitHub before the error would be done twice. Against GitHub itself, with backoff."""
    from urllib3.util.retry import Retry

    return Retry(total=3,
                 connect=2,
                 read=0,
                 status_forcelist=(500, 502, 503, 504),
                 allowed_methods={"GET", "HEAD"},
                 backoff_factor=0 if local else 2,
                 raise_on_status=False,
                 respect_retry_after_header=True)


def repo_root() -> Path:
    """The git checkout's top folder: ``GITHUB_WORKSPACE`` in Actions, else
    ``git rev-parse --show-toplevel``."""
    if os.environ.get("GITHUB_WORKSPACE"):
        return Path(os.environ["GITHUB_WORKSPACE"]).resolve()
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel"],
                             check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DuoError(f"cannot find the git repository root: {exc}") from None
    if out.returncode != 0:
        raise DuoError("cannot find the git repository root: not inside a git checkout "
                       "(set GITHUB_WORKSPACE or run from the repository)")
    return Path(out.stdout.strip()).resolve()


def relative_to_root(path: Path, root: Path | None = None) -> str:
    """``path`` relative to the repository root, as a POSIX string; DuoError when it lies outside."""
    root = root or repo_root()
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        raise DuoError(f"{path} is outside the git repository at {root}; "
                       "put it inside the repository to commit it") from None


def blob_sha(data: bytes) -> str:
    """Git's blob id of ``data``: equal to the ``sha`` GitHub reports for a file with these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def ensure_branch(repo: Repository, branch: str, base: str) -> bool:
    """Create ``branch`` from the head of ``base`` unless it exists; True when it was created."""
    from github import UnknownObjectException

    try:
        repo.get_branch(branch)
        return False
    except UnknownObjectException:
        pass
    with github_errors(f"read base branch {base}"):
        sha = repo.get_branch(base).commit.sha
    with github_errors(f"create branch {branch}"):
        repo.create_git_ref(f"refs/heads/{branch}", sha)
    return True


def put_files(repo: Repository, branch: str, files: dict[str, bytes], message: str) -> list[str]:
    """Commit each file to ``branch`` (one commit per changed file); returns the paths that changed."""
    from github import UnknownObjectException

    changed = []
    for path, data in sorted(files.items()):
        try:
            current = repo.get_contents(path, ref=branch)
        except UnknownObjectException:
            current = None
        with github_errors(f"commit {path} to {branch}"):
            if current is None:
                repo.create_file(path, message, data, branch=branch)
            elif current.sha != blob_sha(data):
                repo.update_file(path, message, data, current.sha, branch=branch)
            else:
                continue  # unchanged: an empty commit would only add noise to the PR
        changed.append(path)
    return changed


def branch_sha(repo: Repository, branch: str) -> str:
    """The commit ``branch`` points at now."""
    with github_errors(f"read branch {branch}"):
        return repo.get_branch(branch).commit.sha


def commit_files(repo: Repository, branch: str, files: dict[str, bytes], message: str) -> str:
    """:func:`put_files`, then the commit ``branch`` points at: link files by this sha and the links
    outlive the branch (GitHub keeps a merged or closed PR's commits)."""
    put_files(repo, branch, files, message)
    return branch_sha(repo, branch)


def find_pr(repo: Repository, branch: str) -> PullRequest | None:
    """The open PR whose head is ``branch`` in this repository, or None."""
    with github_errors(f"list pull requests for {branch}"):
        for pr in repo.get_pulls(state="open", head=f"{repo.owner.login}:{branch}"):
            return pr
    return None


def ensure_label(repo: Repository, name: str, description: str = "") -> None:
    from github import UnknownObjectException

    try:
        repo.get_label(name)
    except UnknownObjectException:
        with github_errors(f"create label {name}"):
            repo.create_label(name, LABEL_COLOR, description)


def clip_body(body: str) -> str:
    if len(body) <= MAX_BODY:
        return body
    return body[:MAX_BODY] + "\n\n…(truncated; see the full report file)\n"


def upsert_pr(repo: Repository, *, branch: str, base: str, title: str, body: str,
              label: str | None = None) -> tuple[PullRequest, bool]:
    """Open a PR from ``branch`` into ``base``, or update the open one's title and body; (pr, created)."""
    body = clip_body(body)
    pr = find_pr(repo, branch)
    if pr is None:
        with github_errors(f"open pull request {branch} -> {base}"):
            pr = repo.create_pull(base=base, head=branch, title=title, body=body)
        created = True
    else:
        with github_errors(f"update pull request #{pr.number}"):
            pr.edit(title=title, body=body)
        created = False
    if label:
        ensure_label(repo, label, "Report of a duo migration round")
        with github_errors(f"label pull request #{pr.number}"):
            pr.add_to_labels(label)
    return pr, created


def upsert_comment(pr: PullRequest, body: str, watermark: str) -> bool:
    """Edit the PR comment carrying ``watermark``, or post a new one; True when it was created."""
    body = clip_body(body)
    with github_errors(f"comment on pull request #{pr.number}"):
        for comment in pr.get_issue_comments():
            if watermark in (comment.body or ""):
                comment.edit(body)
                return False
        pr.create_issue_comment(body)
    return True


def dispatch(repo: Repository, workflow: str, ref: str, inputs: dict[str, str]) -> None:
    """Start ``workflow`` (file name or id) on ``ref`` with ``inputs`` (workflow_dispatch)."""
    with github_errors(f"dispatch workflow {workflow} on {ref}"):
        repo.get_workflow(workflow).create_dispatch(ref, inputs=inputs, throw=True)


# round.yml's ``run-name`` with its inputs filled in: how a dispatched round shows up in the
# workflow-runs list.
RUN_NAME = "duo round {round} ({config})"


def run_title(inputs: dict[str, str]) -> str:
    """The display title GitHub gives a round.yml run dispatched with ``inputs`` (its ``run-name``)."""
    return RUN_NAME.format(round=inputs.get("round", ""), config=inputs.get("config", ""))


def find_run(repo: Repository, workflow: str, title: str, since: datetime, limit: int = 100):
    """The newest ``workflow_dispatch`` run of ``workflow`` titled ``title`` created at or
    after ``since``, or None.

    None too when the workflow itself is unknown (the dispatch that follows reports that).
    """
    from github import UnknownObjectException

    stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with github_errors(f"list the runs of workflow {workflow}"):
        try:
            runs = repo.get_workflow(workflow).get_runs(event="workflow_dispatch", created=f">={stamp}")
            for n, run in enumerate(runs):  # newest first
                created = run.created_at if run.created_at.tzinfo else run.created_at.replace(tzinfo=UTC)
                if n >= limit or created < since:
                    break
                if run.display_title == title:
                    return run
        except UnknownObjectException:
            return None
    return None
