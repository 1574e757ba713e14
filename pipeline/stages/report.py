"""``duo report``: the round's report (markdown, metrics, charts) in ``<report.dir>/<task>/round-<N>/``.

Reads ``round-N/evaluate`` (required) and whatever else the store holds
(``pipeline.report.data.gather``), states plainly what is missing, and saves the folder as artifact
``round-N/report``. ``--round 0`` reports the untuned base student. With ``--open-pr`` it commits
the folder to branch ``duo/<task>/round-<N>`` and opens, or on a rerun updates, the round's PR,
whose images and links name commits (the report branch's, the Hub uploads'), never a branch. In the
Hub store it then writes the round's results and the report's link into the adapter's model card.
A round whose synthesis kept no rows was never evaluated: its report
(``pipeline.report.unevaluated``) states the synthesis, the decision and the adapter to use, with no
metrics and no charts.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from .. import tracking
from ..artifacts import ARTIFACTS, reusable
from ..artifacts.evaluate import read_metrics
from ..config import Config
from ..flags import COMMON, Flag
from ..formatting import rule_row
from ..manifest import MANIFEST, Manifest, zero_usage
from ..report.data import NEEDED_BY, gather
from ..report.render import _html, redact, render  # noqa: F401  (_html: the cells' filter, tested here)
from ..report.unevaluated import gather_unevaluated, unevaluated
from ..stats.decision_text import next_step
from ..store import Store, artifact_name, latest_round, open_store
from .common import publish, round_arg

STAGE = "report"
FLAGS = COMMON + (Flag("--open-pr", "Open, or on a rerun update, the round's pull request with the report.",
                       kind="switch"),)
ARTIFACT = ARTIFACTS[STAGE]
CHARTS = {
    "forest": "paired_differences.png",
    "histogram": "score_distribution.png",
    "categories": "category_means.png",
    "trend": "round_trend.png",
    "confusion": "confusion_matrix.png",
}
WATERMARK = "<!-- duo-report task={task} round={round} -->"


def draw_charts(ctx: dict, folder: Path) -> dict:
    from ..report import charts, forest, trend
    from ..report.confusion import confusion_chart

    ev = ctx["ev"]
    metrics = list(ev["metrics"])
    scores = {m: [(r.get("scores") or {}).get(m) for r in ctx["rows"]] for m in metrics}
    base = {m: [(r.get("scores") or {}).get(m) for r in ctx["base_rows"]] for m in metrics}
    thresholds = {m: s["threshold"] for m, s in ev["metrics"].items() if s.get("threshold") is not None}
    by_cat = {c["name"]: c["stats"] for c in ctx["categories"]}
    base_cats = {c["name"]: c["base_stats"] for c in ctx["categories"]}
    targets = {m: t["mean"] for m, t in ctx["rule_targets"].items() if t.get("mean") is not None}
    conf = ctx["confidence"]
    made = {
        "forest": forest.forest_chart(ev, folder / CHARTS["forest"], confidence=conf)
        if not ctx["is_base"] else None,  # round 0 is the baseline: nothing to compare it with
        "histogram": charts.score_histogram(scores, folder / CHARTS["histogram"], base=base,
                                            rule=ctx["rule_targets"], thresholds=thresholds,
                                            means={m: s["mean"] for m, s in ev["metrics"].items()},
                                            base_means={m: s["mean"] for m, s in ev["baseline"].items()}),
        "categories": charts.category_means(by_cat, metrics, folder / CHARTS["categories"],
                                            base=base_cats if ctx["compare_base"] else None,
                                            confidence=conf),
        "trend": trend.round_trend(ctx["history"], ctx["trend_metrics"], folder / CHARTS["trend"],
                                   x_label=ctx["x_label"], targets=targets, confidence=conf)
        if not ctx["is_base"] else None,  # round 0 has no rounds to compare
        "confusion": confusion_chart(ev["labels"]["confusion"], folder / CHARTS["confusion"])
        if ev.get("labels") else None,  # a label task (docs/structured.md)
    }
    return {k: p.name if p is not None else None for k, p in made.items()}


# --------------------------------------------------------------------------- stage


def report_dir(cfg: Config, round_no: int) -> Path:
    return cfg.resolve(cfg.report.dir) / cfg.task.name / f"round-{round_no}"


def _publish(artifact: Path, target: Path) -> None:
    """Copy the artifact's files (not its manifest) into the report folder, replacing what was there."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for path in artifact.iterdir():
        if path.is_file() and path.name != MANIFEST:
            shutil.copyfile(path, target / path.name)


def context(cfg: Config, store: Store, round_no: int) -> dict:
    """What the templates need: an evaluated round's (``gather``), or a round never evaluated; and the
    round's tracker run (``tracking``, None when off)."""
    ctx = (gather_unevaluated if unevaluated(store, round_no) else gather)(cfg, store, round_no)
    return {**ctx, "tracking": tracking.link(cfg, round_no)}


def _write(ctx: dict, manifest: Manifest, folder: Path, target: Path) -> None:
    ev = ctx["ev"]  # None: a round never evaluated, with no charts
    ctx["charts"] = draw_charts(ctx, folder) if ev is not None else {}
    template = "report.md.j2" if ev is not None else "report_unevaluated.md.j2"
    (folder / "report.md").write_text(render(template, **ctx), encoding="utf-8")
    full = {**(ev or {"evaluated": False}), "cost": ctx["cost"], "data": ctx["data"],
            "decision": ctx["decision"], "adapter": ctx["adapter"], "use_adapter": ctx["use_adapter"]}
    (folder / "metrics.json").write_text(redact(json.dumps(full, indent=2)) + "\n", encoding="utf-8")
    manifest.counts = {"samples": (ev or {}).get("n"), "worst_samples": len(ctx["worst"]),
                       "charts": sum(1 for v in ctx["charts"].values() if v)}
    manifest.usage = zero_usage()
    manifest.extra = {"verdict": None if ev is None else ev["verdict"],
                      "decision": ctx["decision"]["decision"],
                      "report_md": str(target / "report.md"), "report_dir": str(target)}
    manifest.finish(folder).write(folder)


def run(cfg: Config, store: Store, round_no: int | None = None, *, force: bool = False) -> Manifest:
    """Write the round's report folder and artifact ``round-N/report``;
    unchanged inputs keep the existing one."""
    round_no = int(latest_round(store, "evaluate") or 1) if round_no is None else int(round_no)
    if not unevaluated(store, round_no):
        read_metrics(store, round_no, NEEDED_BY)  # fail early, with the missing artifact named
    ins = ARTIFACT.inputs(cfg, store, round_no)
    target = report_dir(cfg, round_no)
    if (old := reusable(store, ins, force=force)) is not None:
        if not (target / "report.md").is_file():
            _publish(store.open(ins.name), target)
        return old
    ctx = context(cfg, store, round_no)
    manifest = ins.start()
    with store.write(ins.name) as folder:
        _write(ctx, manifest, folder, target)
    _publish(store.open(ins.name), target)
    return manifest


def title(ctx: dict) -> str:
    """The PR title: the verdict, and what comes next unless the round passed."""
    d = ctx["decision"]
    verdict = ("NOT EVALUATED" if ctx["ev"] is None else "baseline" if ctx["headline"] == "baseline"
               else ctx["ev"]["verdict"].upper())
    nxt = next_step(d["decision"], d.get("next_round"))
    return f"duo: {ctx['task']} round {ctx['round']}: {verdict}" + (f", {nxt}" if nxt else "")


def publish_pr(cfg: Config, store: Store, round_no: int, folder: Path) -> dict:
    """Commit ``folder`` to branch ``duo/<task>/round-<N>`` and open or update its PR; ``url``,
    ``number``, ``commit`` (the branch head after the commit) and ``report_url``. Images and the
    report are linked by that commit, never by the branch: the links keep working once the branch is
    merged and deleted."""
    from .. import github

    repo = github.connect()
    rel = github.relative_to_root(folder)
    files = {f"{rel}/{p.name}": p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    branch = f"duo/{cfg.task.name}/round-{round_no}"
    base = cfg.report.base_branch or repo.default_branch
    github.ensure_branch(repo, branch, base)
    sha = github.commit_files(repo, branch, files, f"duo: report for {cfg.task.name}, round {round_no}")
    ctx = context(cfg, store, round_no)
    blob = f"{repo.html_url}/blob/{sha}"
    chart_urls = [(name[:-4].replace("_", " "), f"{blob}/{rel}/{name}?raw=true") for name in CHARTS.values()
                  if (folder / name).is_file()]
    report_url = f"{blob}/{rel}/report.md"
    body = render("pr_body.md.j2" if ctx["ev"] is not None else "report_unevaluated.md.j2", **ctx,
                  watermark=WATERMARK.format(task=cfg.task.name, round=round_no),
                  chart_urls=chart_urls,
                  report_path=f"{rel}/report.md",
                  report_url=report_url,
                  report_commit=sha)
    pr, _ = github.upsert_pr(repo, branch=branch, base=base, title=title(ctx), body=body,
                             label=cfg.report.label)
    return {"url": pr.html_url, "number": pr.number, "commit": sha, "report_url": report_url}


def open_pr(cfg: Config, store: Store, round_no: int, folder: Path) -> tuple[str, int]:
    """:func:`publish_pr`'s (url, number)."""
    opened = publish_pr(cfg, store, round_no, folder)
    return opened["url"], opened["number"]


def card_results(ctx: dict, report_url: str | None, pr_url: str | None) -> dict:
    """The round's evaluation as :func:`pipeline.store.cards.finish_model_card`
    writes it into the model card."""
    ev = ctx["ev"]
    evaluated = next((p for p in ctx["lineage"]["data"] if p["name"].endswith("/evaluate")), {})
    return {
        "round": ctx["round"],
        "confidence": ctx["conf"],
        "n": ev.get("n"),
        "verdict": ev["verdict"],
        "rule_kind": ev["rule_kind"],
        "report_url": report_url,
        "pr_url": pr_url,
        "judge": ctx["judging"],
        "metrics": {m: {k: s.get(k) for k in ("mean", "ci_low", "ci_high", "n")}
                    for m, s in ev["metrics"].items()},
        "data_revision": evaluated.get("commit"),
        "data_url": evaluated.get("url"),
    }


def update_model_card(cfg: Config, store: Store, round_no: int, pr: dict | None) -> str | None:
    """Write the round's results, the report link and the judge's prompt hash into the adapter's
    model card on the Hub (the card is written at upload, before the round is evaluated); the card
    commit, or None (local store, round 0, no adapter, nothing changed)."""
    update = getattr(store, "update_model_card", None)
    if update is None or round_no == 0 or not store.exists(artifact_name("finetune", round_no)):
        return None
    ctx = gather(cfg, store, round_no)
    report_url = (pr or {}).get("report_url")
    if report_url is None and store.exists(artifact_name(STAGE, round_no)):
        where = store.describe(artifact_name(STAGE, round_no))
        report_url = f"{where['blob_url']}/report.md" if where.get("blob_url") else None
    return update(round_no, card_results(ctx, report_url, (pr or {}).get("url")))


def summary(m: Manifest, store: Store, round_no: int) -> str:
    if unevaluated(store, round_no):
        return (f"report round {round_no}: not evaluated (synthesis added no rows), "
                f"decision {m.extra.get('decision')}")
    ev = read_metrics(store, round_no, NEEDED_BY)
    rows = ev.get("rule") or []
    # round 0 is what relative rows compare with
    shown = [r for r in rows if not (round_no == 0 and r.get("vs"))]
    verdict = ("baseline round (relative rules apply from round 1)" if len(shown) < len(rows)
               else ev["verdict"].upper())
    conds = "; ".join(rule_row(r) for r in shown)
    return (f"report round {round_no}: {verdict}, decision {m.extra.get('decision')}"
            + (f": {conds}" if conds else ""))


def command(cfg: Config, args: argparse.Namespace) -> int:
    store = open_store(cfg)
    round_no = round_arg(args, store, "evaluate")
    m = run(cfg, store, round_no, force=bool(getattr(args, "force", False)))
    folder = report_dir(cfg, round_no)
    lines = [summary(m, store, round_no), f"  report: {folder / 'report.md'}"]
    url, number, pr = "", "", None
    if getattr(args, "open_pr", False):
        pr = publish_pr(cfg, store, round_no, folder)
        url, number = pr["url"], pr["number"]
        lines.append(f"  pull request: {url}")
    if (card := update_model_card(cfg, store, round_no, pr)) is not None:
        lines.append(f"  model card: results of round {round_no} added (commit {card[:12]})")
    publish(store, m.artifact, redact("\n".join(lines)), title=f"duo report, round {round_no}",
            report_dir=str(folder), pr_url=url, pr_number=number)
    return 0
