"""``duo promote``: the reviewer's verdict on a round's report PR, recorded where the adapters live.

``--merged`` promotes round N: in the hub store the model repo gets tag ``report.promote_ref`` (default
``production``) at the commit that round ``round-N``'s adapter branch points to; in both stores artifact
``round-N/promote`` records ``promotion.json`` = ``{"round", "status": "promoted", "ref", "commit", "model_repo",
"pr_url", "date"}`` (in the hub store it lands in the dataset repo, so the dataset repo says which round is in
production). ``--rejected`` (the PR was closed unmerged) records ``"status": "rejected"`` and moves no tag: ``duo
pull``/``duo export`` never default to a rejected round, and ``decide`` with ``report.require_approval`` never
dispatches past it. The round comes from ``--round``, else the PR branch ``duo/<task>/round-<N>``, else the
report's watermark in the PR body.
"""

from __future__ import annotations

import argparse
import json
import re

from .config import Config
from .errors import DuoError
from .flags import SET, Flag, round_number
from .manifest import Manifest, now_iso, zero_usage
from .stage import StageInputs, publish
from .store import Store, artifact_name, open_store, round_of

STAGE = "promote"
FILE = "promotion.json"
FLAGS = (
    SET,
    Flag("--round", "Round whose report PR was closed; unset: read from --pr-branch or --pr-body.",
         type=round_number, metavar="N"),
    Flag("--merged", "The round's report PR was merged: promote the round's adapter.", kind="switch"),
    Flag("--rejected", "The round's report PR was closed unmerged: mark the round rejected.", kind="switch"),
    Flag("--pr-branch", "Head branch of the report PR (duo/<task>/round-<N>); gives the round when --round is unset."),
    Flag("--pr-body", "Body of the report PR; its duo-report watermark gives the round when nothing else does."),
    Flag("--pr-url", "URL of the report PR, kept in the promotion record."),
)
BRANCH = re.compile(r"^duo/(?P<task>.+)/round-(?P<round>\d+)$")
WATERMARK = re.compile(r"<!-- duo-report task=(?P<task>\S+) round=(?P<round>\d+) -->")


def pr_round(cfg: Config, branch: str | None, body: str | None) -> int:
    """The round a report PR is about: from its branch ``duo/<task>/round-<N>``, else its body's watermark."""
    for text, pattern, where in ((branch or "", BRANCH, "branch"), (body or "", WATERMARK, "body")):
        found = pattern.search(text.strip())
        if found is None:
            continue
        if found["task"] != cfg.task.name:
            raise DuoError(f"pull request {where} names task '{found['task']}' but the config is task "
                           f"'{cfg.task.name}'; pass that task's config (repository variable DUO_CONFIG)")
        return int(found["round"])
    raise DuoError(f"cannot tell the round: --pr-branch {branch!r} is not duo/{cfg.task.name}/round-<N> and the PR "
                   "body has no duo-report watermark; pass --round")


def read_promotion(store: Store, round_no: int) -> dict | None:
    """Round ``round_no``'s promotion record, or None when its PR was neither merged nor rejected yet."""
    name = artifact_name(STAGE, round_no)
    if not store.exists(name):
        return None
    try:
        return json.loads((store.open(name) / FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DuoError(f"{store.local_path(name) / FILE}: cannot read the promotion record ({exc})") from None


def promotions(store: Store) -> dict[int, dict]:
    """``round -> promotion record`` of every round whose report PR was merged or rejected."""
    rounds = sorted({round_of(n) for n in store.list("round-") if n.endswith(f"/{STAGE}")} - {None})
    return {r: rec for r in rounds if (rec := read_promotion(store, r)) is not None}


def production(records: dict[int, dict]) -> dict | None:
    """The round in production: the most recently promoted one (None when none was)."""
    promoted = [rec for rec in records.values() if rec.get("status") == "promoted"]
    return max(promoted, key=lambda rec: (rec.get("date") or "", rec["round"]), default=None)


def rejected_rounds(records: dict[int, dict]) -> set[int]:
    return {r for r, rec in records.items() if rec.get("status") == "rejected"}


def adapter_commit(store: Store, round_no: int) -> str | None:
    """The model-repo commit of round ``round_no``'s adapter (head of branch ``round-N``); None in a local store."""
    if store.kind != "hub":
        return None
    refs = store.hub.call(f"list refs of {store.model_repo}",
                          lambda: store.hub.api.list_repo_refs(store.model_repo, repo_type="model"))
    heads = {b.name: b.target_commit for b in refs.branches}
    if f"round-{round_no}" not in heads:
        raise DuoError(f"round {round_no} has no adapter branch round-{round_no} in {store.model_repo}; "
                       "nothing to promote")
    return heads[f"round-{round_no}"]


def review_gate(cfg: Config, store: Store, repo, round_no: int) -> str | None:
    """None when round N+1 may be dispatched under ``report.require_approval``; else what decide waits for.

    The round's report PR must be merged (promoted) or carry an approving review (the latest review of each reviewer
    counts; a standing "changes requested" holds it back); a PR closed unmerged, or a rejected record, stops it.
    """
    from . import github

    record = read_promotion(store, round_no) or {}
    rejected = (f"round {round_no} was rejected in review (its report PR was closed unmerged); no further round is "
                "dispatched")
    if record.get("status") in ("promoted", "rejected"):
        return None if record["status"] == "promoted" else rejected
    branch = f"duo/{cfg.task.name}/round-{round_no}"
    with github.github_errors(f"list pull requests for {branch}"):
        pr = next(iter(repo.get_pulls(state="all", head=f"{repo.owner.login}:{branch}")), None)
        if pr is None:
            return f"waiting for round {round_no}'s report PR (branch {branch}) and an approving review of it"
        if pr.merged or pr.state == "closed":
            return None if pr.merged else rejected
        states = {r.user.login: r.state for r in pr.get_reviews()
                  if r.state in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED")}  # oldest first: the last one stays
    if "APPROVED" in states.values() and "CHANGES_REQUESTED" not in states.values():
        return None
    return (f"waiting for an approving review of {pr.html_url} before round {round_no + 1} is dispatched "
            "(report.require_approval): an approving review starts it, or re-run `duo decide --dispatch`")


def run(cfg: Config, store: Store, round_no: int, *, merged: bool, pr_url: str = "") -> Manifest:
    """Record the review's outcome for round ``round_no`` (and, when merged in a hub store, move the tag)."""
    finetune = artifact_name("finetune", round_no)
    if merged and not store.exists(finetune):
        raise DuoError(f"round {round_no} has no adapter ('{finetune}') in the {store.kind} store at {store.root}; "
                       "nothing to promote")
    commit = adapter_commit(store, round_no) if merged else None
    ref = cfg.report.promote_ref
    if commit:
        store.hub.move_ref(store.model_repo, "model", "tag", ref, commit)
    record = {"round": round_no, "status": "promoted" if merged else "rejected", "ref": ref if merged else None,
              "commit": commit, "model_repo": getattr(store, "model_repo", None), "pr_url": pr_url or None,
              "date": now_iso()}
    parents = [store.manifest(finetune)] if store.exists(finetune) else []
    ins = StageInputs(STAGE, round_no, {"promote_ref": ref}, (), parents, values={"status": record["status"]})
    manifest = ins.start()
    manifest.usage = zero_usage()
    manifest.extra = {k: record[k] for k in ("status", "ref", "commit", "pr_url")}
    with store.write(ins.name) as folder:
        (folder / FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        manifest.finish(folder).write(folder)
    return manifest


def command(cfg: Config, args: argparse.Namespace) -> int:
    if bool(args.merged) == bool(args.rejected):
        raise DuoError("duo promote: give exactly one of --merged (the PR was merged) or --rejected (closed unmerged)")
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
