"""Where a canary verdict goes on GitHub: a comment on the promotion PR (the merged report PR of the round in
production; one comment per weight step, edited on a rerun), and, on ``ramp``/``rollback``, a PR that
changes the gateway config in the repository (branch ``duo/<task>/rollout-<percent>``), so review drives the
rollout as it drives promotion. Through ``pipeline.github`` (PyGithub), as the report's PR.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ..artifacts.promote import production, promotions
from ..config import Config
from ..errors import DuoError
from ..store import Store

WATERMARK = "<!-- duo-canary task={task} weight={weight} -->"
PR_NUMBER = re.compile(r"/pull/(\d+)")
CONFIG_LABEL = "duo-rollout"


def promotion_pr(cfg: Config, store: Store, repo):
    """The report PR of the round in production (its recorded URL, else its branch), or None."""
    from .. import github

    record = production(promotions(store))
    if record is None:
        return None
    with github.github_errors("find the promotion pull request"):
        if (m := PR_NUMBER.search(record.get("pr_url") or "")) is not None:
            return repo.get_pull(int(m.group(1)))
        branch = f"duo/{cfg.task.name}/round-{record['round']}"
        return next(iter(repo.get_pulls(state="all", head=f"{repo.owner.login}:{branch}")), None)


def comment_verdict(cfg: Config, store: Store, body: str, weight: float) -> str | None:
    """Post (or edit) the verdict's comment on the promotion PR; its URL, or None without one (a warning)."""
    from .. import github

    mark = WATERMARK.format(task=cfg.task.name, weight=f"{weight:g}")
    try:
        repo = github.connect()
        pr = promotion_pr(cfg, store, repo)
        if pr is None:
            print("warning: no promotion PR to comment on (no round promoted with duo promote --merged)",
                  file=sys.stderr)
            return None
        github.upsert_comment(pr, f"{mark}\n{body}", mark)
    except DuoError as exc:
        print(f"warning: the canary verdict was not commented: {exc}", file=sys.stderr)
        return None
    return pr.html_url


def open_config_pr(cfg: Config, paths: list[Path], weight: float, title: str, body: str) -> dict:
    """Commit the written gateway files to ``duo/<task>/rollout-<percent>`` and open (or update) its PR."""
    from .. import github

    repo = github.connect()
    root = github.repo_root()
    files = {github.relative_to_root(p, root): Path(p).read_bytes() for p in paths}
    branch = f"duo/{cfg.task.name}/rollout-{round(weight * 100)}"
    base = cfg.report.base_branch or repo.default_branch
    github.ensure_branch(repo, branch, base)
    sha = github.commit_files(repo, branch, files, f"duo canary: {title}")
    pr, _ = github.upsert_pr(repo, branch=branch, base=base, title=title, body=body, label=CONFIG_LABEL)
    return {"url": pr.html_url, "number": pr.number, "commit": sha}
