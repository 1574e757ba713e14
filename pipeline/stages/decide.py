"""``duo decide``: after a round's evaluation, store the decision and act on it.

The decision itself is :func:`pipeline.stats.decision.decide` (pure), from the facts
:func:`pipeline.stats.decision_facts.decide_round` reads: pass, continue, stop-plateau, stop-budget,
stop-no-service, stop-regressed or stop-no-data (the order of the checks: ``pipeline.stats.decision``).
A round whose synthesis kept no rows is decided too: it was never evaluated. ``run`` stores it as
artifact ``round-N/decide`` (``decision.json``, rendered by
:func:`pipeline.stats.decision_text.record` and read back with
:func:`pipeline.artifacts.decide.read_decision`); ``command --dispatch`` starts the next round's
workflow on GitHub and comments on the round's PR.
"""

from __future__ import annotations

import argparse
import json

from .. import tracking
from ..artifacts import ARTIFACTS, reusable
from ..artifacts.decide import read_decision
from ..config import Config
from ..dispatch import (
    DISPATCHING,
    comment_decision,
    dispatch_next,
    dispatch_records,
    dispatch_where,
    review_gate,
)
from ..flags import COMMON, Flag
from ..manifest import Manifest, zero_usage
from ..stats.decision_facts import decide_round
from ..stats.decision_text import record
from ..store import Store, latest_round, open_store
from .common import publish, round_arg

STAGE = "decide"
ARTIFACT = ARTIFACTS[STAGE]
FLAGS = COMMON + (Flag("--dispatch",
                       "Dispatch the next round's workflow on GitHub when the round falls short.",
                       kind="switch"),)


def run(cfg: Config, store: Store, round_no: int | None = None, *, force: bool = False) -> Manifest:
    """Write ``round-N/decide/decision.json``; an unchanged decision keeps the existing artifact."""
    round_no = int(latest_round(store, "evaluate") or 1 if round_no is None else round_no)
    found = record(decide_round(cfg, store, round_no))
    ins = ARTIFACT.inputs(cfg, store, round_no, decision=found)
    if (old := reusable(store, ins, force=force)) is not None:
        tracking.log_round(cfg, store, round_no)  # again: the tracker may have been down the first time
        return old
    manifest = ins.start()
    manifest.counts = {
        "synthetic_total": found["synthetic_total"],
        "next_samples": found["next_samples"] or 0,
    }
    manifest.usage = zero_usage()
    manifest.extra = {
        "decision": found["decision"],
        "reason": found["reason"],
        "spend_usd": found["spend_usd"],
        **dispatch_records(store, ins.name, found),
    }
    with store.write(ins.name) as folder:
        (folder / "decision.json").write_text(json.dumps(found, indent=2) + "\n", encoding="utf-8")
        manifest.finish(folder).write(folder)
    tracking.log_round(cfg, store, round_no)  # the round's figures are final: into its tracker run
    return manifest


def command(cfg: Config, args: argparse.Namespace) -> int:
    with DISPATCHING:  # other processes and runners are kept out by the task lock the CLI holds
        return _command(cfg, args)


def _dispatch_line(found: dict, sent: dict | None, already: bool) -> str:
    """What this decide did about round N+1, for its summary: dispatched it, found it already
    dispatched (nothing sent now), or nothing to say."""
    if not sent:
        return ""
    if already:
        return (f"\n\nRound {found['next_round']} was already dispatched ({dispatch_where(sent)}); "
                "nothing was dispatched now.")
    return f"\n\nDispatched round {found['next_round']} ({dispatch_where(sent)})."


def _command(cfg: Config, args: argparse.Namespace) -> int:
    store = open_store(cfg)
    round_no = round_arg(args, store, "evaluate")
    m = run(cfg, store, round_no, force=args.force)
    if line := tracking.summary_line(tracking.link(cfg, round_no)):
        print(f"  {line}")
    found = read_decision(store, round_no)
    sent, pr_url, waiting, already = None, None, None, False
    if args.dispatch:
        from .. import github

        repo = github.connect()
        if found["decision"] == "continue" and cfg.report.require_approval and (
                waiting := review_gate(cfg, store, repo, round_no)):
            print(f"  round {found['next_round']} not dispatched: {waiting}")
        if found["decision"] == "continue" and not waiting:
            m, sent, already = dispatch_next(cfg, store, m, found, repo, force=args.force)
            if already:
                print(f"  round {found['next_round']} was already dispatched "
                      f"({dispatch_where(sent)}); use --force to dispatch it again")
            else:
                print(f"  dispatched {cfg.report.workflow}: round {found['next_round']}, "
                      f"{found['next_samples']} samples")
        where = dispatch_where(sent) if sent else None
        if pr_url := comment_decision(cfg, repo, found, sent is not None, waiting, where):
            print(f"  commented on {pr_url}")
    publish(store, m.artifact, f"decide round {round_no}: {found['decision']}: {found['reason']}"
            + _dispatch_line(found, sent, already)
            + (f"\n\nNot dispatched: {waiting}." if waiting else ""), title=f"duo decide, round {round_no}",
            decision=found["decision"], next_round=found["next_round"] or "",
            next_samples=found["next_samples"] or "", dispatched="true" if sent else "false")
    return 0
