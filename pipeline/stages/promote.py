"""``duo promote``: the reviewer's verdict on a round's report PR, recorded where the adapters live.

``--merged`` promotes round N: in the hub store the model repo gets tag ``report.promote_ref``
(default ``production``) at the commit that round ``round-N``'s adapter branch points to; in both
stores artifact ``round-N/promote`` records ``promotion.json`` = ``{"round", "status": "promoted",
"ref", "commit", "model_repo", "pr_url", "date"}`` (in the hub store it lands in the dataset repo,
so the dataset repo says which round is in production). ``--rejected`` (the PR was closed
unmerged) records ``"status": "rejected"`` and moves no tag: ``duo pull``/``duo export`` never
default to a rejected round, and ``decide`` with ``report.require_approval`` never dispatches past
it. The round comes from ``--round``, else the PR branch ``duo/<task>/round-<N>``, else the
report's watermark in the PR body.
"""

from __future__ import annotations

import argparse
import json
import re

from ..artifacts import ARTIFACTS
from ..artifacts.finetune import adapter_commit
from ..artifacts.promote import FILE
from ..config import Config
from ..errors import DuoError
from ..flags import SET, Flag, round_number
from ..manifest import Manifest, now_iso, zero_usage
from ..store import Store, artifact_name, open_store
from .common import publish

STAGE = "promote"
ARTIFACT = ARTIFACTS[STAGE]
FLAGS = (
    SET,
    Flag("--round", "Round whose report PR was closed; unset: read from --pr-branch or --pr-body.",
         type=round_number, metavar="N"),
    Flag("--merged", "The round's report PR was merged: promote the round's adapter.", kind="switch"),
    Flag("--rejected", "The round's report PR was closed unmerged: mark the round rejected.", kind="switch"),
    Flag("--pr-branch",
         "Head branch of the report PR (duo/<task>/round-<N>); "
         "gives the round when --round is unset."),
    Flag("--pr-body",
         "Body of the report PR; its duo-report watermark gives the round when nothing else does."),
    Flag("--pr-url", "URL of the report PR, kept in the promotion record."),
)
BRANCH = re.compile(r"^duo/(?P<task>.+)/round-(?P<round>\d+)$")
WATERMARK = re.compile(r"<!-- duo-report task=(?P<task>\S+) round=(?P<round>\d+) -->")


def pr_round(cfg: Config, branch: str | None, body: str | None) -> int:
    """The round a report PR is about: from its branch ``duo/<task>/round-<N>``, else
    its body's watermark."""
    for text, pattern, where in ((branch or "", BRANCH, "branch"), (body or "", WATERMARK, "body")):
        found = pattern.search(text.strip())
        if found is None:
            continue
        if found["task"] != cfg.task.name:
            raise DuoError(f"pull request {where} names task '{found['task']}' but the config is task "
                           f"'{cfg.task.name}'; pass that task's config (repository variable DUO_CONFIG)")
        return int(found["round"])
    raise DuoError("cannot tell the round: "
                   f"--pr-branch {branch!r} is not duo/{cfg.task.name}/round-<N> "
                   "and the PR body has no duo-report watermark; pass --round")


def run(cfg: Config, store: Store, round_no: int, *, merged: bool, pr_url: str = "") -> Manifest:
    """Record the review's outcome for round ``round_no`` (and, when merged in a hub store, move the tag)."""
    finetune = artifact_name("finetune", round_no)
    if merged and not store.exists(finetune):
        raise DuoError(f"round {round_no} has no adapter ('{finetune}') "
                       f"in the {store.kind} store at {store.root}; nothing to promote")
    commit = adapter_commit(store, round_no) if merged else None
    ref = cfg.report.promote_ref
    if commit:
        store.hub.move_ref(store.model_repo, "model", "tag", ref, commit)
    record = {
        "round": round_no,
        "status": "promoted" if merged else "rejected",
        "ref": ref if merged else None,
        "commit": commit,
        "model_repo": getattr(store, "model_repo", None),
        "pr_url": pr_url or None,
        "date": now_iso(),
    }
    ins = ARTIFACT.inputs(cfg, store, round_no, status=record["status"])
    manifest = ins.start()
    manifest.usage = zero_usage()
    manifest.extra = {k: record[k] for k in ("status", "ref", "commit", "pr_url")}
    with store.write(ins.name) as folder:
        (folder / FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        manifest.finish(folder).write(folder)
    return manifest


def command(cfg: Config, args: argparse.Namespace) -> int:
    if bool(args.merged) == bool(args.rejected):
        raise DuoError("duo promote: give exactly one of --merged (the PR was merged) "
                       "or --rejected (closed unmerged)")
    round_no = args.round if args.round is not None else pr_round(cfg, args.pr_branch, args.pr_body)
    store = open_store(cfg)
    m = run(cfg, store, round_no, merged=bool(args.merged), pr_url=args.pr_url or "")
    extra = m.extra
    if extra["status"] == "promoted":
        where = f"tag {extra['ref']} -> {store.model_repo}@{extra['commit']}" if extra["commit"] else \
            f"the {store.kind} store at {store.root}"
        line = f"promote round {round_no}: promoted to production ({where})"
    else:
        line = f"promote round {round_no}: rejected in review; pull, export and decide will not use it"
    publish(store, m.artifact, line, title=f"duo promote, round {round_no}", round=round_no,
            status=extra["status"], commit=extra["commit"] or "")
    return 0
