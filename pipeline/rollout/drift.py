"""Drift: the promoted student falling significantly behind the service on recent traffic (``duo monitor``).

The evidence is the canary's (``rollout.evidence``) on the window's shadowed prompts; drift is the paired
difference's CI wholly below 0 (``stats.paired.change_word`` says ``worse``) on at least
``rollout.min_prompts`` prompts. A drift is recorded as artifact ``monitor/round-<N>`` (``decision.json``: a
``continue`` decision naming round N, the next round of the task) and round N is dispatched with the decide
stage's dispatch code (``pipeline.dispatch.dispatch_next``: a marker first, then GitHub's runs list, then the
dispatch), so a rerun, or the next scheduled monitor before round N starts, dispatches nothing more.
"""

from __future__ import annotations

import json

from ..artifacts.canary import ARTIFACT
from ..config import Config
from ..manifest import Manifest, zero_usage
from ..store import Store, latest_round
from .verdict import diff_text

PREFIX = "monitor/"
FILE = "decision.json"


def is_drift(cfg: Config, evidence: dict) -> bool:
    d = evidence.get("diff") or {}
    return evidence.get("change") == "worse" and int(d.get("n") or 0) >= cfg.rollout.min_prompts


def drift_decision(cfg: Config, store: Store, evidence: dict) -> dict:
    """The ``found`` record the dispatch code reads: the next round of the task and its samples."""
    last = latest_round(store) or 0
    nxt = last + 1
    return {"decision": "continue", "round": last, "next_round": nxt,
            "next_samples": cfg.synthesize.target_for_round(nxt), "spend_usd": 0.0, "synthetic_total": 0,
            "reason": ("the promoted student fell behind the service on recent traffic: "
                       f"{diff_text(evidence)}")}


def record(cfg: Config, store: Store, found: dict, evidence: dict) -> Manifest:
    """``monitor/round-<N>``, written once per round it dispatches (an existing one is kept: it carries the
    dispatch records)."""
    name = f"{PREFIX}round-{found['next_round']}"
    if store.exists(name):
        return store.manifest(name)
    m = ARTIFACT.inputs(cfg, store, None).start()  # the canary's declaration: the same evidence
    m.stage, m.artifact = "monitor", name
    m.usage = evidence.get("usage") or zero_usage()
    m.counts = {"shadowed": int(evidence.get("prompts") or 0)}
    m.extra = {"decision": "continue", "reason": found["reason"], "next_round": found["next_round"]}
    with store.write(name) as out:
        kept = {k: evidence.get(k) for k in ("decision_metric", "diff", "change", "prompts")}
        (out / FILE).write_text(json.dumps({**found, "evidence": kept}, indent=2, default=str) + "\n",
                                encoding="utf-8")
        m.finish(out).write(out)
    return m
