"""``duo canary``: the canary's evidence from the captured traffic of a window, and its verdict.

Reads the calls the gateway captured in the last ``rollout.window_hours`` (``--window-hours``) from
``rollout.traffic`` (``--traffic``; default ``<local store>/traffic``), compares the student's answers with
the service's on the shadowed prompts (``pipeline.rollout.evidence``: offline metrics, the pairwise judge
when configured, paired clustered CIs), measures the split, error and fallback rates, latency and cost
(``pipeline.rollout.operations``), and decides ``ramp``, ``hold`` or ``rollback``
(``pipeline.rollout.verdict``).
On ``ramp``/``rollback`` it writes the gateway config for the next weight (``rollout.config_dir``).

Output artifact ``canary/<UTC stamp>``: ``canary.json`` (window, evidence, operations, verdict),
``canary.md`` and ``prompts.jsonl`` (each shadowed prompt: the question, both answers, scores, ``win``).
``--comment`` posts the verdict on the promotion PR; ``--open-pr`` opens a PR with the new gateway config.
Step outputs: ``verdict``, ``weight``, ``next-weight``, ``report``, ``config-pr-url``.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from ..artifacts.canary import ARTIFACT, MARKDOWN, PROMPTS, REPORT, current_weight
from ..config import Config
from ..flags import SET, Flag
from ..manifest import Manifest
from ..records import write_jsonl
from ..rollout.evidence import compare, read_window, shadow_rows
from ..rollout.gateway import share, write_gateway_configs
from ..rollout.operations import operations
from ..rollout.verdict import decide
from ..store import Store, open_store
from ..templating import render_file
from .common import TRAFFIC_WINDOW, publish

FLAGS = (
    SET,
    *TRAFFIC_WINDOW,
    Flag("--weight",
         "The student's weight now (0-1); unset: the latest canary's verdict, else rollout.canary.",
         type=share, metavar="W"),
    Flag("--comment", "Post the verdict as a comment on the promotion PR (GitHub); unset: print it only.",
         kind="switch"),
    Flag("--open-pr", "On ramp or rollback, open (or update) a PR with the next gateway config.",
         kind="switch"),
)


def run(cfg: Config, store: Store, *, traffic: Path | None = None, window_hours: float | None = None,
        weight: float | None = None, now: datetime | None = None) -> tuple[Manifest, dict]:
    """Read the window, decide, write the next gateway config (ramp/rollback) and the artifact."""
    window = read_window(cfg, traffic, window_hours, now)
    found, until, hours = window.found, window.until, window.hours
    groups = found.groups()
    name = f"canary/{window.stamp}"
    ins = ARTIFACT.inputs(cfg, store, None, window_hours=hours, until=until.isoformat())
    rows = shadow_rows(groups)
    evidence = compare(cfg, store, rows, artifact=name)
    ops = operations(cfg, found.calls, groups, hours, until)
    if weight is None:
        weight = current_weight(store)
    weight = float(cfg.rollout.canary if weight is None else weight)
    verdict = decide(cfg, evidence, ops, weight)
    files = []
    if verdict["verdict"] in ("ramp", "rollback"):
        files = [str(p) for p in write_gateway_configs(cfg, verdict["next_weight"])]
    report = {"task": cfg.task.name, "artifact": name, "verdict": verdict, "evidence": evidence, "ops": ops,
              "window": {"since": window.since.isoformat(timespec="seconds"),
                         "until": until.isoformat(timespec="seconds"), "hours": hours,
                         "folder": str(window.folder), "calls": len(found.calls),
                         "unreadable_lines": found.problems[:20]},
              "gateway_files": files}
    markdown = render_file("canary.md.j2", **report, conf_pct=round(cfg.evaluate.confidence * 100))
    manifest = ins.start()
    manifest.artifact = name
    manifest.counts = {"calls": len(found.calls), "requests": ops["split"]["requests"], "shadowed": len(rows),
                       "unreadable_lines": len(found.problems)}
    manifest.usage = evidence.get("usage") or {}
    manifest.extra = {"verdict": verdict["verdict"], "weight": weight, "next_weight": verdict["next_weight"],
                      "reason": verdict["reason"]}
    with store.write(name) as out:
        (out / REPORT).write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        (out / MARKDOWN).write_text(markdown, encoding="utf-8")
        write_jsonl(out / PROMPTS, rows)
        manifest.finish(out).write(out)
    report["markdown"] = markdown
    return manifest, report


def _title(cfg: Config, verdict: dict) -> str:
    w = f"{verdict['next_weight']:.0%}"
    return (f"duo canary: {cfg.task.name}: roll back the student to 0%" if verdict["verdict"] == "rollback"
            else f"duo canary: {cfg.task.name}: ramp the student to {w}")


def command(cfg: Config, args: argparse.Namespace) -> int:
    from ..rollout.publish import comment_verdict, open_config_pr

    store = open_store(cfg)
    m, report = run(cfg, store, traffic=args.traffic, window_hours=args.window_hours, weight=args.weight)
    verdict = report["verdict"]
    print(report["markdown"])
    pr = {}
    if args.open_pr and report["gateway_files"]:
        pr = open_config_pr(cfg, [Path(p) for p in report["gateway_files"]], verdict["next_weight"],
                            _title(cfg, verdict), report["markdown"])
        print(f"  gateway config PR: {pr['url']}")
    if args.comment and (url := comment_verdict(cfg, store, report["markdown"], verdict["weight"])):
        print(f"  commented on {url}")
    line = (f"canary {cfg.task.name}: {verdict['verdict']} (student weight {verdict['weight']:.0%} -> "
            f"{verdict['next_weight']:.0%}): {verdict['reason']}")
    publish(store, m.artifact, line, title="duo canary", verdict=verdict["verdict"], weight=verdict["weight"],
            next_weight=verdict["next_weight"], report=str(store.local_path(m.artifact) / MARKDOWN),
            config_pr_url=pr.get("url", ""))
    return 0
