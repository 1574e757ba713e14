"""``duo report``: the round's report (markdown, metrics, charts) in ``<report.dir>/<task>/round-<N>/``.

Reads ``round-N/evaluate`` (required) and whatever else the store holds (prepare, synthesize, finetune, earlier
rounds), states plainly what is missing, and saves the folder as artifact ``round-N/report``. With ``--open-pr``
it commits the folder to branch ``duo/<task>/round-<N>`` and opens, or on a rerun updates, the round's PR.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
from pathlib import Path

from . import decide, gha
from .budget import spent_in_store
from .config import Config
from .errors import DuoError
from .manifest import MANIFEST, Manifest
from .records import read_jsonl
from .store import Store, artifact_name, latest_round, open_store, round_of

STAGE = "report"
TEMPLATES = Path(__file__).resolve().parent / "templates"
REASONS = ("empty", "truncated", "duplicate", "near_duplicate", "test_overlap")
CHARTS = {"histogram": "score_distribution.png", "categories": "category_means.png", "trend": "round_trend.png"}
WATERMARK = "<!-- duo-report task={task} round={round} -->"
SECRET_VARS = ("GITHUB_TOKEN", "GH_TOKEN", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY", "GEMINI_API_KEY",
               "GOOGLE_API_KEY")
MAX_TEXT = 1500  # characters of one answer shown in the worst-samples table


# --------------------------------------------------------------------------- gathering


def _usage(m: Manifest) -> dict:
    u = m.usage or {}
    return {"name": m.artifact, "requests": int(u.get("requests") or 0), "input_tokens": int(u.get("input_tokens") or 0),
            "output_tokens": int(u.get("output_tokens") or 0), "cost_usd": float(u.get("cost_usd") or 0.0)}


def cost_summary(cfg: Config, store: Store, round_no: int) -> dict:
    own = {artifact_name(STAGE, round_no), artifact_name("decide", round_no)}
    rows = [_usage(store.manifest(n)) for n in store.list(f"round-{round_no}/") if n not in own]
    return {"round_artifacts": rows, "round_usd": round(sum(r["cost_usd"] for r in rows), 6),
            "total_usd": round(spent_in_store(store), 6), "budget_usd": cfg.budget.max_spend_usd}


def data_summary(store: Store, round_no: int) -> dict:
    prep = None
    if store.exists("prepare"):
        c = store.manifest("prepare").counts or {}
        prep = {"train": c.get("train"), "test": c.get("test"), "bad": c.get("bad") or c.get("bad_rows")}
    rounds = []
    for k in range(1, round_no + 1):
        name = artifact_name("synthesize", k)
        if store.exists(name):
            c = store.manifest(name).counts or {}
            removed = c.get("removed") if isinstance(c.get("removed"), dict) else {}
            rounds.append({"round": k, "kept": int(c.get("kept") or 0), "requested": c.get("requested"),
                           "removed": {r: int(removed.get(r) or 0) for r in REASONS}})
    synthetic = sum(r["kept"] for r in rounds)
    train = prep["train"] if prep and prep["train"] is not None else None
    return {"prepare": prep, "rounds": rounds, "this_round": any(r["round"] == round_no for r in rounds),
            "synthetic_total": synthetic, "train_total": None if train is None else train + synthetic}


def adapter_info(cfg: Config, store: Store, round_no: int) -> dict | None:
    name = artifact_name("finetune", round_no)
    if not store.exists(name):
        return None
    info = store.describe(name)
    if info.get("repo_type") == "model" and info.get("repo_id"):
        return {"repo": str(info["repo_id"]), "revision": str(info.get("revision") or ""), "base": cfg.student.model}
    return {"repo": str(store.local_path(name) / "adapter"), "revision": "", "base": cfg.student.model}


def worst_samples(ev: dict, rows: list[dict], n: int) -> tuple[str | None, list[dict]]:
    """The ``n`` lowest-scored rows: by similarity when judged, else by embedding, else the first metric."""
    names = list(ev.get("metrics") or {})
    order = (["similarity"] if ev.get("judge") == "llm" else []) + ["embedding"] + names
    metric = next((m for m in order if any((r.get("scores") or {}).get(m) is not None for r in rows)), None)
    if metric is None or n <= 0:
        return metric, []
    scored = sorted((r for r in rows if (r.get("scores") or {}).get(metric) is not None),
                    key=lambda r: (r["scores"][metric], str(r.get("id"))))
    out = []
    for r in scored[:n]:
        first = (r.get("judge") or [{}])[0] or {}
        reasons = [(label, first[key]) for label, key in (("similarity", "similarity_reason"),
                                                          ("precision", "precision_reason")) if first.get(key)]
        out.append({"id": r.get("id"), "category": r.get("category"), "score": r["scores"][metric],
                    "instruction": r.get("instruction") or "", "reference": r.get("reference") or "",
                    "answer": r.get("answer") or "", "reasons": reasons})
    return metric, out


def history(store: Store, round_no: int) -> list[dict]:
    out = []
    for name in store.list("round-"):
        k = round_of(name)
        if name.endswith("/evaluate") and k is not None and k <= round_no:
            try:
                ev = decide.evaluation(store, k, "duo report")
            except DuoError:
                continue  # an unreadable earlier round only leaves a gap in the trend
            out.append({"round": k, "verdict": ev["verdict"],
                        "means": {m: s.get("mean") for m, s in (ev.get("metrics") or {}).items()}})
    return sorted(out, key=lambda h: h["round"])


def normalize(ev: dict) -> dict:
    """The evaluation with every key the templates read present (None where the evaluate stage left it out)."""
    summary_keys = ("mean", "pass_rate", "threshold", "ci_low", "ci_high", "n")
    metrics = {m: {k: (s or {}).get(k) for k in summary_keys} for m, s in (ev.get("metrics") or {}).items()}
    rule = [{"metric": r.get("metric"), "stat": r.get("stat", "mean"), "min": r.get("min"), "value": r.get("value"),
             "ok": bool(r.get("ok")), "why": r.get("why")} for r in ev.get("rule") or []]
    return {**ev, "n": ev.get("n"), "judge": ev.get("judge"), "rule_kind": ev.get("rule_kind") or "pass",
            "metrics": metrics, "rule": rule, "by_category": ev.get("by_category") or {}}


def gather(cfg: Config, store: Store, round_no: int) -> dict:
    """Everything the templates need (see ``templates/report.md.j2``)."""
    ev = normalize(decide.evaluation(store, round_no, "duo report"))
    scores_path = store.open(artifact_name("evaluate", round_no)) / "scores.jsonl"
    rows = read_jsonl(scores_path) if scores_path.is_file() else []
    metric, worst = worst_samples(ev, rows, cfg.report.worst_samples)
    by_cat = ev.get("by_category") or {}
    cat_metrics = [m for m in ev.get("metrics") or {} if any(m in v for v in by_cat.values())]
    categories = [{"name": c, "n": max((s.get("n") or 0) for s in v.values()) if v else 0,
                   "means": {m: (v.get(m) or {}).get("mean") for m in cat_metrics}} for c, v in sorted(by_cat.items())]
    hist = history(store, round_no)
    return {"task": cfg.task.name, "round": round_no, "ev": ev, "conf": f"{cfg.evaluate.confidence:.0%}",
            "rows": rows, "worst_metric": metric, "worst": worst, "categories": categories,
            "category_metrics": cat_metrics, "history": hist,
            "trend_metrics": sorted({m for h in hist for m in h["means"]}),
            "decision": decide.decision(cfg, store, round_no), "cost": cost_summary(cfg, store, round_no),
            "data": data_summary(store, round_no), "adapter": adapter_info(cfg, store, round_no),
            "reasons": REASONS, "charts": {}, "synthesis_configured": cfg.service.synthesize is not None}


# --------------------------------------------------------------------------- rendering


def _num(x) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.3f}".rstrip("0").rstrip(".") if x else "0"


def _html(text) -> str:
    text = str(text)
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + " …"
    return html.escape(text).replace("\n", "<br>")


def render(name: str, **context) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.filters.update(
        num=_num, html=_html, md=lambda t: re.sub(r"<(?=[A-Za-z/!?])", "&lt;", str(t)),
        cell=lambda t: html.escape(str(t), quote=False).replace("|", "\\|").replace("\n", " "),
        pct=lambda x: "–" if x is None else f"{x:.0%}",
        usd=lambda x: f"${x:,.2f}" if abs(x) >= 1 else f"${x:.4f}")
    return re.sub(r"\n{3,}", "\n\n", redact(env.get_template(name).render(**context)))


def redact(text: str) -> str:
    """Replace any secret held in the environment (tokens, API keys) by ``***``: never in reports or PR bodies."""
    for var in SECRET_VARS:
        value = os.environ.get(var) or ""
        if len(value) >= 6:
            text = text.replace(value, "***")
    return text


def draw_charts(ctx: dict, cfg: Config, folder: Path) -> dict:
    from . import charts

    ev = ctx["ev"]
    metrics = list(ev.get("metrics") or {})
    scores = {m: [(r.get("scores") or {}).get(m) for r in ctx["rows"]] for m in metrics}
    thresholds = {m: s["threshold"] for m, s in (ev.get("metrics") or {}).items() if s.get("threshold") is not None}
    made = {
        "histogram": charts.score_histogram(scores, thresholds, folder / CHARTS["histogram"]),
        "categories": charts.category_means(ev.get("by_category") or {}, metrics, folder / CHARTS["categories"]),
        "trend": charts.round_trend({h["round"]: h["means"] for h in ctx["history"]}, folder / CHARTS["trend"],
                                    {r["metric"]: r["min"] for r in ev["rule"] if r["stat"] == "mean"}),
    }
    return {k: p.name if p is not None else None for k, p in made.items()}


# --------------------------------------------------------------------------- stage


def report_dir(cfg: Config, round_no: int) -> Path:
    return cfg.resolve(cfg.report.dir) / cfg.task.name / f"round-{round_no}"


def _parents(store: Store, round_no: int) -> list[Manifest]:
    names = [n for n in store.list() if (round_of(n) or 0) <= round_no and n.rsplit("/", 1)[-1] not in
             (STAGE, "decide") and not n.startswith("journal")]
    return [store.manifest(n) for n in names]


def _publish(artifact: Path, target: Path) -> None:
    """Copy the artifact's files (not its manifest) into the report folder, replacing what was there."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for path in artifact.iterdir():
        if path.is_file() and path.name != MANIFEST:
            shutil.copyfile(path, target / path.name)


def run(cfg: Config, store: Store, round_no: int | None = None, *, force: bool = False) -> Manifest:
    """Write the round's report folder and artifact ``round-N/report``; unchanged inputs keep the existing one."""
    round_no = int(round_no or latest_round(store, "evaluate") or 1)
    name = artifact_name(STAGE, round_no)
    decide.evaluation(store, round_no, "duo report")  # fail early, with the missing artifact named
    chash = cfg.section_hash("task", "report", "evaluate", "budget", "synthesize", "student")
    parents = _parents(store, round_no)
    target = report_dir(cfg, round_no)
    if not force and store.exists(name):
        old = store.manifest(name)
        if old.config_hash == chash and old.parents == [p.as_parent() for p in parents]:
            if not (target / "report.md").is_file():
                _publish(store.open(name), target)
            return old
    ctx = gather(cfg, store, round_no)
    manifest = Manifest.start(STAGE, name, chash, round_no, parents=parents)
    with store.write(name) as folder:
        ctx["charts"] = draw_charts(ctx, cfg, folder)
        (folder / "report.md").write_text(render("report.md.j2", **ctx), encoding="utf-8")
        full = {**ctx["ev"], "cost": ctx["cost"], "data": ctx["data"], "decision": ctx["decision"],
                "adapter": ctx["adapter"]}
        (folder / "metrics.json").write_text(redact(json.dumps(full, indent=2)) + "\n", encoding="utf-8")
        manifest.counts = {"samples": ctx["ev"].get("n"), "worst_samples": len(ctx["worst"]),
                           "charts": sum(1 for v in ctx["charts"].values() if v)}
        manifest.usage = {"requests": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "cached": 0}
        manifest.extra = {"verdict": ctx["ev"]["verdict"], "decision": ctx["decision"]["decision"],
                          "report_md": str(target / "report.md"), "report_dir": str(target)}
        manifest.finish(folder).write(folder)
    _publish(store.open(name), target)
    return manifest


def open_pr(cfg: Config, store: Store, round_no: int, folder: Path) -> tuple[str, int]:
    """Commit ``folder`` to branch ``duo/<task>/round-<N>`` and open or update its PR; (url, number)."""
    from . import github

    repo = github.connect()
    rel = github.relative_to_root(folder)
    files = {f"{rel}/{p.name}": p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    branch = f"duo/{cfg.task.name}/round-{round_no}"
    base = cfg.report.base_branch or repo.default_branch
    github.ensure_branch(repo, branch, base)
    github.put_files(repo, branch, files, f"duo: report for {cfg.task.name}, round {round_no}")
    ctx = gather(cfg, store, round_no)
    blob = f"{repo.html_url}/blob/{branch}"
    chart_urls = [(p.stem.replace("_", " "), f"{blob}/{rel}/{p.name}?raw=true") for p in sorted(folder.glob("*.png"))]
    body = render("pr_body.md.j2", **ctx, watermark=WATERMARK.format(task=cfg.task.name, round=round_no),
                  chart_urls=chart_urls, report_path=f"{rel}/report.md", report_url=f"{blob}/{rel}/report.md")
    verdict = ctx["ev"]["verdict"].upper()
    title = f"duo: {cfg.task.name} round {round_no}: {verdict} ({ctx['decision']['decision']})"
    pr, _ = github.upsert_pr(repo, branch=branch, base=base, title=title, body=body, label=cfg.report.label)
    return pr.html_url, pr.number


def summary(m: Manifest, store: Store, round_no: int) -> str:
    ev = decide.evaluation(store, round_no, "duo report")
    conds = "; ".join(f"{r['metric']} {r['stat']} {_num(r.get('value'))} {'>=' if r['ok'] else '<'} {_num(r['min'])}"
                      for r in ev.get("rule", []))
    return f"report round {round_no}: {ev['verdict'].upper()} ({conds}); decision {m.extra.get('decision')}"


def command(cfg: Config, args: argparse.Namespace) -> int:
    store = open_store(cfg)
    round_no = args.round or latest_round(store, "evaluate") or 1
    m = run(cfg, store, round_no, force=getattr(args, "force", False))
    folder = report_dir(cfg, round_no)
    line = summary(m, store, round_no)
    print(line)
    print(f"  report: {folder / 'report.md'}")
    url, number = "", ""
    if getattr(args, "open_pr", False):
        url, number = open_pr(cfg, store, round_no, folder)
        print(f"  pull request: {url}")
    gha.set_output("artifact", m.artifact)
    gha.set_output("location", store.describe(m.artifact)["location"])
    gha.set_output("report-dir", str(folder))
    gha.set_output("pr-url", url)
    gha.set_output("pr-number", number)
    gha.step_summary(redact(f"### duo report, round {round_no}\n\n{line}" + (f"\n\nPull request: {url}" if url
                                                                               else "")))
    return 0
