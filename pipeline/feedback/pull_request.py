"""The report PR and what people wrote on it, read through PyGithub (``pipeline.github``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..errors import DuoError
from ..github import github_errors
from .collect import Message

if TYPE_CHECKING:
    from github.PullRequest import PullRequest
    from github.Repository import Repository

BRANCH = re.compile(r"^duo/(?P<task>.+)/round-(?P<round>\d+)$")
WATERMARK = re.compile(r"<!-- duo-report task=(?P<task>\S+) round=(?P<round>\d+) -->")


def stamp(moment: datetime | None) -> str:
    """ISO 8601 in UTC with a Z, as GitHub writes it."""
    if moment is None:
        return ""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_pr(repo: Repository, task: str, round_no: int | None, number: int | None) -> PullRequest:
    """PR ``number``, else the newest PR (open or closed) from branch ``duo/<task>/round-<N>``."""
    if number is not None:
        with github_errors(f"read pull request #{number}"):
            return repo.get_pull(int(number))
    if round_no is None:
        raise DuoError("duo feedback needs --pr or --round to find the report pull request")
    branch = f"duo/{task}/round-{round_no}"
    with github_errors(f"list pull requests for {branch}"):
        for pr in repo.get_pulls(state="all", head=f"{repo.owner.login}:{branch}"):
            return pr
    raise DuoError(f"no pull request from branch {branch}; "
                   f"run duo report --open-pr for round {round_no} first")


def pr_round(pr: PullRequest, task: str) -> int:
    """The round a report PR is about: its head branch ``duo/<task>/round-<N>``, else its body's watermark."""
    for text, pattern, where in ((pr.head.ref or "", BRANCH, "branch"), (pr.body or "", WATERMARK, "body")):
        found = pattern.search(text.strip())
        if found is None:
            continue
        if found["task"] != task:
            raise DuoError(f"pull request #{pr.number}: its {where} names task '{found['task']}' but the "
                           f"config is task '{task}'; pass that task's config "
                           "(repository variable DUO_CONFIG)")
        return int(found["round"])
    raise DuoError(f"pull request #{pr.number} is not a duo report (branch {pr.head.ref!r}, no duo-report "
                   "watermark in its body); pass --round")


def messages(pr: PullRequest) -> list[Message]:
    """Issue comments, reviews and review comments of ``pr``, each with author, last edit and link."""
    def message(item, when: datetime | None, kind: str) -> Message:
        return Message(item.user.login if item.user else "", stamp(when), item.body or "",
                       item.html_url or f"{kind} {item.id}", str(item.author_association or "NONE"))

    with github_errors(f"read the comments of pull request #{pr.number}"):
        out = [message(c, c.updated_at or c.created_at, "comment") for c in pr.get_issue_comments()]
        out += [message(r, r.submitted_at, "review") for r in pr.get_reviews()]
        out += [message(c, c.updated_at or c.created_at, "review comment") for c in pr.get_review_comments()]
    return out
