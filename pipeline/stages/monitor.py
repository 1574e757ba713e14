"""``duo monitor``: on recent traffic, is the promoted student falling significantly behind the service?

Reads the last ``rollout.window_hours`` (``--window-hours``) of captured traffic (``--traffic``), compares the
student with the service on the shadowed prompts as ``duo canary`` does (``pipeline.rollout.evidence``), and
on drift (the paired difference's CI below 0 on at least ``rollout.min_prompts`` prompts;
``pipeline.rollout.drift``) records ``monitor/round-<N>`` and, with ``--dispatch``, starts round N's workflow
on GitHub once (the decide stage's idempotent dispatch). Step outputs: ``drift``, ``next-round``,
``dispatched``.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from ..config import Config
from ..dispatch import DISPATCHING, dispatch_next, dispatch_where
from ..flags import SET, Flag
from ..rollout.drift import PREFIX, drift_decision, is_drift, record
from ..rollout.evidence import compare, read_window, shadow_rows
from ..rollout.verdict import diff_text
from ..store import Store, open_store
from .common import TRAFFIC_WINDOW, publish

FLAGS = (
    SET,
    *TRAFFIC_WINDOW,
    Flag("--dispatch", "On drift, dispatch the next round's workflow on GitHub (once).", kind="switch"),
)


def evidence_of(cfg: Config, store: Store, traffic: Path | None, window_hours: float | None,
                now: datetime | None = None) -> dict:
    """The canary's evidence on the window's shadowed prompts."""
    window = read_window(cfg, traffic, window_hours, now)
    return compare(cfg, store, shadow_rows(window.found.groups()), artifact=f"{PREFIX}{window.stamp}")


def command(cfg: Config, args: argparse.Namespace) -> int:
    store = open_store(cfg)
    evidence = evidence_of(cfg, store, args.traffic, args.window_hours)
    if not is_drift(cfg, evidence):
        short = evidence.get("change") == "worse"  # behind, but on fewer prompts than rollout.min_prompts
        why = (f"fewer than rollout.min_prompts ({cfg.rollout.min_prompts}) shadowed prompts to call it"
               if short else "the student is not significantly behind the service")
        line = f"monitor {cfg.task.name}: no drift ({why}): {diff_text(evidence)}"
        publish(store, PREFIX.rstrip("/"), line, title="duo monitor", drift="false", next_round="",
                dispatched="false")
        return 0
    found = drift_decision(cfg, store, evidence)
    sent, already = None, False
    with DISPATCHING:
        m = record(cfg, store, found, evidence)
        if args.dispatch:
            from .. import github

            m, sent, already = dispatch_next(cfg, store, m, found, github.connect())
    if sent is None:
        act = "run `duo monitor --dispatch` (or dispatch round.yml) to start it"
    elif already:
        act = f"already dispatched ({dispatch_where(sent)}); nothing dispatched now"
    else:
        act = f"dispatched ({dispatch_where(sent)})"
    line = f"monitor {cfg.task.name}: drift: {found['reason']}; round {found['next_round']}: {act}"
    publish(store, m.artifact, line, title="duo monitor", drift="true", next_round=found["next_round"],
            dispatched="true" if sent else "false")
    return 0
