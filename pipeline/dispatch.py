"""What ``duo decide --dispatch`` does on GitHub: dispatch the next round's workflow once (idempotent
across kills, reruns and concurrent decides), wait for an approving review where
``report.require_approval`` asks for one, and comment the decision on the round's PR."""

from __future__ import annotations

import os
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

from .artifacts.promote import read_promotion
from .config import Config
from .errors import DuoError
from .manifest import Manifest
from .stats.decision_text import HEADLINES
from .store import Store

COMMENT_MARK = "<!-- duo-decide task={task} round={round} -->"
# A run of round N+1 created up to this long before the dispatch marker still counts (runner clocks
# differ from GitHub's; a round dispatched by hand just before is not dispatched again).
DISPATCH_MARGIN = timedelta(minutes=10)
DISPATCHING = threading.RLock()  # decide in several threads of one process (the task lock is re-entrant)
LIST_LAG_S = 30.0  # GitHub may list a dispatched run a few seconds after accepting the dispatch


def dispatch_records(store: Store, name: str, found: dict) -> dict:
    """The dispatch records (``dispatching``, ``dispatched``) of the artifact being remade, when it
    decided the same next round: a remade decide artifact (new duo, changed config) must not start
    that round again."""
    if not store.exists(name):
        return {}
    old = store.manifest(name).extra or {}
    sent_round = ((old.get("dispatched") or {}).get("inputs") or {}).get("round")
    rounds = {(old.get("dispatching") or {}).get("round"), int(sent_round) if sent_round else None} - {None}
    if old.get("decision") != found["decision"] or found["next_round"] not in rounds:
        return {}
    return {k: old[k] for k in ("dispatching", "dispatched") if k in old}


def comment_body(cfg: Config, found: dict, dispatched: bool, waiting: str | None = None,
                 where: str | None = None) -> str:
    """The decision as a PR comment (watermarked so a rerun edits it instead of posting another);
    ``where`` says where the dispatch went (see ``dispatch_where``)."""
    mark = COMMENT_MARK.format(task=cfg.task.name, round=found["round"])
    head = HEADLINES[found["decision"]]
    lines = [mark, f"### duo decision after round {found['round']}: `{found['decision']}`", "", head, "",
             found["reason"] + ".", "",
             f"Spend so far: ${found['spend_usd']:.4f}; synthetic rows so far: {found['synthetic_total']}."]
    if found["decision"] == "continue" and waiting:
        lines.append(f"Round {found['next_round']} ({found['next_samples']} synthetic samples) "
                     f"is not dispatched yet: {waiting}.")
    elif found["decision"] == "continue":
        sent = f"dispatched ({where})." if where else "dispatched."
        lines.append(f"Round {found['next_round']} ({found['next_samples']} synthetic samples) was "
                     + (sent if dispatched else "not dispatched (run `duo decide --dispatch`)."))
    elif found["decision"] == "pass":
        lines.append("No further rounds: merge this PR and use the round's adapter.")
    elif found["decision"] == "stop-budget":
        lines.append("No further rounds will be started; raise the budget in the config to go on.")
    elif found["decision"] == "stop-regressed":
        best = (found.get("best") or {}).get("round")
        lines.append(f"No further rounds will be started; round {best}'s adapter stays the one to use "
                     "(set budget.on_regression: continue to go on regardless).")
    elif found["decision"] == "stop-no-data":
        lines.append("No further rounds will be started; change what removed the synthesized pairs "
                     "(named above) or lower synthesize.min_yield to go on.")
    else:
        lines.append("No further rounds will be started.")
    return "\n".join(lines) + "\n"


def dispatch_where(sent: dict) -> str:
    """Where a dispatch went, for messages: its run (number and link) once GitHub listed it, else
    the workflow and branch."""
    if not sent.get("run"):
        return f"{sent['workflow']} on {sent['ref']}"
    return f"run {sent['run_number']}: {sent['run']}" if sent.get("run_number") else sent["run"]


def dispatch_ref(repo) -> str:
    """The branch to run the next round on: the current one in Actions, else the repo's default branch."""
    ref = os.environ.get("GITHUB_REF", "")
    if ref.startswith("refs/heads/"):
        return ref[len("refs/heads/"):]
    return repo.default_branch


def next_inputs(cfg: Config, found: dict) -> dict[str, str]:
    """The next round's workflow inputs (the config as a path from the repository root)."""
    from . import github

    if cfg.source_path is None:
        raise DuoError("--dispatch needs the config's file path (to pass it to the next round's workflow)")
    return {"config": github.relative_to_root(cfg.source_path), "round": str(found["next_round"]),
            "samples": str(found["next_samples"]), "dry-run": "false"}


def _record(store: Store, m: Manifest, **extra) -> Manifest:
    """Add ``extra`` to the decide artifact's manifest (for the hub store: one commit)."""
    decision_json = (store.open(m.artifact) / "decision.json").read_bytes()
    m.extra = {**(m.extra or {}), **extra}
    with store.write(m.artifact) as folder:
        (folder / "decision.json").write_bytes(decision_json)
        m.write(folder)
    return m


def mark_dispatched(store: Store, m: Manifest, sent: dict) -> Manifest:
    """Record the dispatch in the decide artifact,
    so a rerun of the job does not start the next round twice."""
    return _record(store, m, dispatched=sent)


def _found_run(cfg: Config, repo, inputs: dict, since: datetime) -> dict | None:
    from . import github

    run = github.find_run(repo, cfg.report.workflow, github.run_title(inputs), since - DISPATCH_MARGIN)
    if run is None:
        return None
    return {"ref": run.head_branch, "inputs": inputs, "workflow": cfg.report.workflow,
            "run": run.html_url, "run_number": run.run_number}


def _with_run(cfg: Config, store: Store, m: Manifest, sent: dict, repo) -> tuple[Manifest, dict]:
    """A stored dispatch with its run, looked up once when the record lacks it (GitHub lists a run
    a few seconds after the dispatch), so a rerun can name it; as it was when GitHub cannot say."""
    at = ((m.extra or {}).get("dispatching") or {}).get("at")
    if sent.get("run_number") or not at or not sent.get("inputs"):
        return m, sent
    try:
        since = datetime.fromisoformat(at.replace("Z", "+00:00"))
        run = _found_run(cfg, repo, sent["inputs"], since)
    except DuoError:
        return m, sent  # naming the run is a courtesy: the dispatch stands either way
    if run is None:
        return m, sent
    sent = {**sent, "run": run["run"], "run_number": run["run_number"]}
    return mark_dispatched(store, m, sent), sent


def dispatch_next(cfg: Config, store: Store, m: Manifest, found: dict, repo, *,
                  force: bool = False) -> tuple[Manifest, dict, bool]:
    """Dispatch round N+1 unless it already was; returns (the manifest, the dispatch made or found, found).

    Idempotent across kills and concurrent runs: a marker ``dispatching: {round, at}`` is stored
    first (for the hub store, a commit), then GitHub's workflow-runs list is asked for a run titled
    with round N+1 of this config; only when there is none is the workflow dispatched. A rerun that
    finds the marker but no ``dispatched`` record (killed after the dispatch) finds the run and
    dispatches nothing. ``force`` dispatches again regardless.
    """
    from . import github

    with DISPATCHING:  # threads of one process; other processes and runners are kept out by the task lock
        m = store.manifest(m.artifact)  # fresh: another decide may have dispatched meanwhile
        extra = m.extra or {}
        if extra.get("dispatched") and not force:
            m, sent = _with_run(cfg, store, m, extra["dispatched"], repo)
            return m, sent, True
        inputs = next_inputs(cfg, found)
        marker = extra.get("dispatching") if not force else None
        if marker and marker.get("round") == found["next_round"]:
            at = datetime.fromisoformat(marker["at"].replace("Z", "+00:00"))
            sent = _found_run(cfg, repo, inputs, at)
            lag = LIST_LAG_S - (datetime.now(UTC) - at).total_seconds()
            if sent is None and lag > 0:  # GitHub lists a dispatched run a few seconds after accepting it
                time.sleep(lag)
                sent = _found_run(cfg, repo, inputs, at)
            if sent is not None:
                return mark_dispatched(store, m, sent), sent, True
        at = datetime.now(UTC)
        m = _record(store, m, dispatching={"round": found["next_round"],
                                           "at": at.strftime("%Y-%m-%dT%H:%M:%SZ")})
        if not force and (sent := _found_run(cfg, repo, inputs, at)) is not None:
            return mark_dispatched(store, m, sent), sent, True
        ref = dispatch_ref(repo)
        github.dispatch(repo, cfg.report.workflow, ref, inputs)
        sent = {"ref": ref, "inputs": inputs, "workflow": cfg.report.workflow}
        return mark_dispatched(store, m, sent), sent, False


def comment_decision(cfg: Config, repo, found: dict, dispatched: bool,
                     waiting: str | None = None, where: str | None = None) -> str | None:
    """Comment the decision on the round's PR (edited on a rerun); the PR's url, or None without one."""
    from . import github

    try:
        pr = github.find_pr(repo, f"duo/{cfg.task.name}/round-{found['round']}")
        if pr is not None:
            github.upsert_comment(pr, comment_body(cfg, found, dispatched, waiting, where),
                                  COMMENT_MARK.format(task=cfg.task.name, round=found["round"]))
    except DuoError as exc:
        # The decision stands and the dispatch went out; a job without pull-requests: write only
        # loses the note.
        print(f"warning: no decision comment on the round's pull request: {exc}", file=sys.stderr)
        return None
    return pr.html_url if pr is not None else None


def review_gate(cfg: Config, store: Store, repo, round_no: int) -> str | None:
    """None when round N+1 may be dispatched under ``report.require_approval``; else what decide waits for.

    The round's report PR must be merged (promoted) or carry an approving review (the latest review
    of each reviewer counts; a standing "changes requested" holds it back); a PR closed unmerged, or
    a rejected record, stops it.
    """
    from . import github

    record = read_promotion(store, round_no) or {}
    rejected = (f"round {round_no} was rejected in review (its report PR was closed unmerged); "
                "no further round is dispatched")
    if record.get("status") in ("promoted", "rejected"):
        return None if record["status"] == "promoted" else rejected
    branch = f"duo/{cfg.task.name}/round-{round_no}"
    with github.github_errors(f"list pull requests for {branch}"):
        pr = next(iter(repo.get_pulls(state="all", head=f"{repo.owner.login}:{branch}")), None)
        if pr is None:
            return (f"waiting for round {round_no}'s report PR (branch {branch}) "
                    "and an approving review of it")
        if pr.merged or pr.state == "closed":
            return None if pr.merged else rejected
        # oldest first: the last one stays
        states = {r.user.login: r.state for r in pr.get_reviews()
                  if r.state in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED")}
    if "APPROVED" in states.values() and "CHANGES_REQUESTED" not in states.values():
        return None
    return (f"waiting for an approving review of {pr.html_url} before round {round_no + 1} is dispatched "
            "(report.require_approval): an approving review starts it, or re-run `duo decide --dispatch`")

