"""What the round report shows, gathered from the store; no rendering here (that is ``report.py``).

Reads ``round-N/evaluate`` (``metrics.json`` and ``scores.jsonl``), round 0 (the untuned baseline)
and the earlier rounds, the prepare, synthesize and finetune manifests, and takes the decision now
(:func:`pipeline.stats.decision_facts.decide_round`). Keys a sparse evaluation left out are present
as None, so the templates never guess.
"""

from __future__ import annotations

from ..artifacts.evaluate import read_metrics, read_scores
from ..config import Config
from ..errors import DuoError
from ..stats.decision_facts import decide_round
from ..stats.decision_text import evidence_text, record, summary
from ..stats.seeds import beside_change
from ..store import BASELINE_ROUND, Store, artifact_name, round_of
from .adapter import adapter_choice, adapter_info
from .costs import cost_summary
from .lineage import answer_counts, judging, lineage
from .parity import category_parity, parity_rows, service_gap
from .reviewers import agreement_for, review_for
from .training import ALL_REASONS, data_summary

NEEDED_BY = "duo report"
SUMMARY_KEYS = ("mean", "pass_rate", "threshold", "ci_low", "ci_high", "n")
BASE_KEYS = ("mean", "ci_low", "ci_high", "n")
DIFF_KEYS = ("diff", "ci_low", "ci_high", "n", "change", "mc_error", "p_value")


def worst_samples(ev: dict, rows: list[dict], n: int) -> tuple[str | None, list[dict]]:
    """The ``n`` lowest-scored rows by the decision metric (what decides the round), else by similarity
    when judged, else by embedding, else the first metric scored."""
    names = list(ev.get("metrics") or {})
    order = ([ev["decision_metric"]] if ev.get("decision_metric") else []) + \
        (["similarity"] if ev.get("judge") == "llm" else []) + ["embedding"] + names
    metric = next((m for m in order if any((r.get("scores") or {}).get(m) is not None for r in rows)), None)
    if metric is None or n <= 0:
        return metric, []
    scored = sorted((r for r in rows if (r.get("scores") or {}).get(metric) is not None),
                    key=lambda r: (r["scores"][metric], str(r.get("id"))))
    out = []
    for r in scored[:n]:
        first = (r.get("judge") or [{}])[0] or {}
        reasons = [(label, first[key]) for label, key in (("similarity", "similarity_reason"),
                                                          ("precision", "precision_reason"))
                   if first.get(key)]
        out.append({"id": r.get("id"), "category": r.get("category"), "score": r["scores"][metric],
                    "instruction": r.get("instruction") or "", "reference": r.get("reference") or "",
                    "answer": r.get("answer") or "", "reasons": reasons})
    return metric, out


def _pick(d, keys) -> dict:
    return {k: (d or {}).get(k) for k in keys}


def train_rows(store: Store, round_no: int) -> int | None:
    """Rows round ``round_no`` trained on (its finetune manifest's ``counts.train_rows``); 0 for the base."""
    if round_no == BASELINE_ROUND:
        return 0
    name = artifact_name("finetune", round_no)
    rows = (store.manifest(name).counts or {}).get("train_rows") if store.exists(name) else None
    return None if rows is None else int(rows)


def history(store: Store, round_no: int) -> tuple[list[dict], str]:
    """Every evaluated round up to ``round_no``, round 0 labelled ``base``,
    and the x-axis they share: training rows when every round's are known, else the round number."""
    out = []
    for name in store.list("round-"):
        k = round_of(name)
        if not name.endswith("/evaluate") or k is None or k > round_no:
            continue
        try:
            ev = read_metrics(store, k, NEEDED_BY)
        except DuoError:
            continue  # an unreadable earlier round only leaves a gap in the trend
        stats = {m: _pick(s, BASE_KEYS) for m, s in (ev.get("metrics") or {}).items() if isinstance(s, dict)}
        out.append({"round": k, "label": "base" if k == BASELINE_ROUND else f"r{k}",
                    "verdict": ev["verdict"], "train_rows": train_rows(store, k), "stats": stats})
    out.sort(key=lambda h: h["round"])
    by_rows = all(h["train_rows"] is not None for h in out)
    for h in out:
        h["x"] = h["train_rows"] if by_rows else h["round"]
    return out, "training rows" if by_rows else "round"


def normalize(ev: dict) -> dict:
    """The evaluation with every key the templates read present
    (None where the evaluate stage left it out)."""
    metrics = {m: _pick(s, SUMMARY_KEYS) for m, s in (ev.get("metrics") or {}).items()}
    rule = [{"metric": r.get("metric"), "stat": r.get("stat", "mean"), "vs": r.get("vs"),
             "min": r.get("min"), "above": r.get("above"), "value": r.get("value"),
             "ok": bool(r.get("ok")), "why": r.get("why")}
            for r in ev.get("rule") or []]
    diffs = {key: {m: _pick(d, DIFF_KEYS) for m, d in (ev.get(key) or {}).items()}
             for key in ("vs_baseline", "vs_previous", "vs_service")}
    return {**ev, "n": ev.get("n"), "judge": ev.get("judge"), "rule_kind": ev.get("rule_kind") or "pass",
            "metrics": metrics, "rule": rule, "by_category": ev.get("by_category") or {},
            "baseline": {m: _pick(s, BASE_KEYS) for m, s in (ev.get("baseline") or {}).items()}, **diffs,
            "previous_round": ev.get("previous_round"), "power": ev.get("power") or {},
            "decision_metric": ev.get("decision_metric") or next(iter(metrics), None)}


def category_cis(rows: list[dict], metrics: list[str], confidence: float, samples: int) -> dict:
    """category -> metric -> ``{mean, ci_low, ci_high, n}`` from score rows
    (prompts resampled, as evaluate does)."""
    from ..stats.paired import clustered_ci

    groups: dict = {}
    for r in rows:
        if r.get("category") is not None:
            groups.setdefault(str(r["category"]), []).append(r)
    return {c: {m: clustered_ci([(r.get("scores") or {}).get(m) for r in rs], [str(r.get("id")) for r in rs],
                                samples=samples, confidence=confidence) for m in metrics}
            for c, rs in groups.items()}


def categories(ev: dict, base_ev: dict | None, cis: dict | None = None, base_cis: dict | None = None
               ) -> tuple[list[dict], list[str]]:
    """Per-category rows (n, this round's means, the base's means, and both with CIs in
    ``stats``/``base_stats`` where score rows gave them) and the metrics they hold."""
    by_cat, base_cat = ev["by_category"], (base_ev or {}).get("by_category") or {}
    names = [m for m in ev["metrics"] if any(m in v for v in by_cat.values())]
    cis, base_cis = cis or {}, base_cis or {}

    def stats(summary: dict, found: dict, c: str, m: str) -> dict:
        s = (summary.get(c) or {}).get(m) or {}
        ci = (found.get(c) or {}).get(m) or {}
        return {"mean": s.get("mean"), "n": s.get("n"),
                "ci_low": ci.get("ci_low"), "ci_high": ci.get("ci_high")}

    rows = [{"name": c, "n": max((s.get("n") or 0) for s in v.values()) if v else 0,
             "means": {m: (v.get(m) or {}).get("mean") for m in names},
             "base": {m: ((base_cat.get(c) or {}).get(m) or {}).get("mean") for m in names},
             "stats": {m: stats(by_cat, cis, c, m) for m in names},
             "base_stats": {m: stats(base_cat, base_cis, c, m) for m in names}}
            for c, v in sorted(by_cat.items())]
    return rows, names


def decision_now(cfg: Config, store: Store, round_no: int) -> dict:
    """The decision as ``decide`` would store it (``decision.json``: ``conditions``, ``limits`` and
    ``evidence`` included), plus ``summary`` (the reason without the rule's rows, which the report
    states each on its own line, and without the evidence) and ``evidence_text`` (None when nothing
    was compared)."""
    found = decide_round(cfg, store, round_no)
    return {**record(found), "summary": summary(found),
            "evidence_text": evidence_text(found) if found.evidence else None}


def shown_rule(ev: dict, is_base: bool) -> tuple[list[dict], bool]:
    """The rule rows the verdict table shows, and whether relative rows were left out: round 0 is
    the baseline, so a condition against the baseline or the previous round cannot be checked
    there."""
    if not is_base:
        return ev["rule"], False
    rows = [r for r in ev["rule"] if not r["vs"]]
    return rows, len(rows) < len(ev["rule"])


def gather(cfg: Config, store: Store, round_no: int) -> dict:
    """Everything the templates need (see ``templates/report.md.j2``)."""
    ev = normalize(read_metrics(store, round_no, NEEDED_BY))
    is_base = round_no == BASELINE_ROUND
    rows = read_scores(store, round_no) or []
    base_rows = None if is_base else read_scores(store, BASELINE_ROUND)
    try:
        base_ev = None if is_base or base_rows is None else read_metrics(store, BASELINE_ROUND, NEEDED_BY)
    except DuoError:
        base_ev = None
    metric, worst = worst_samples(ev, rows, cfg.report.worst_samples)
    opts = {"confidence": cfg.evaluate.confidence, "samples": cfg.evaluate.bootstrap_samples}
    cats, cat_metrics = categories(ev, base_ev, category_cis(rows, list(ev["metrics"]), **opts),
                                   category_cis(base_rows or [], list(ev["metrics"]), **opts))
    hist, x_label = history(store, round_no)
    prev = ev["previous_round"]
    pins = lineage(store, round_no)
    rule, relative_left_out = shown_rule(ev, is_base)
    return {
        "task": cfg.task.name,
        "round": round_no,
        "is_base": is_base,
        "student": cfg.student.model,
        "ev": ev,
        "conf": f"{cfg.evaluate.confidence:.0%}",
        "confidence": cfg.evaluate.confidence,
        "rows": rows,
        "base_rows": base_rows or [],
        "compare_base": not is_base and bool(ev["baseline"] or ev["vs_baseline"]),
        "prev_label": (f"round {prev}" if prev not in (None, BASELINE_ROUND) and not is_base
                       else None),
        "gap": service_gap(ev),
        "parity": parity_rows(ev),
        "category_parity": category_parity(ev),
        "worst_metric": metric,
        "worst": worst,
        "categories": cats,
        "category_metrics": cat_metrics,
        "history": hist,
        "x_label": x_label,
        "trend_metrics": [m for m in ev["metrics"] if any(m in h["stats"] for h in hist)],
        "decision": decision_now(cfg, store, round_no),
        "cost": cost_summary(cfg, store, round_no),
        "data": data_summary(store, round_no),
        "adapter": (own := adapter_info(cfg, store, round_no, pins["adapter"])),
        "use_adapter": adapter_choice(cfg, store, round_no, own),
        "reasons": ALL_REASONS,
        "charts": {},
        "synthesis_configured": cfg.service.synthesize is not None,
        "lineage": pins,
        "judging": judging(cfg, store, ev, round_no),
        "answers": answer_counts(store, round_no),
        "rule": rule,
        "relative_left_out": relative_left_out,
        "rule_targets": rule_targets(ev),
        "headline": "baseline" if relative_left_out else ev["verdict"],
        # finetune.seeds: the spread between seeds beside the round's change (vs the previous round)
        "seed_rows": beside_change(ev.get("seed_spread") or {}, ev["vs_previous"] or ev["vs_baseline"]),
        # people's labels (duo feedback): the PR's review block and their agreement with the judge
        "review": review_for(cfg, store, round_no, rows, metric),
        "agreement": agreement_for(cfg, store, round_no, ev, rows),
    }


def rule_targets(ev: dict) -> dict:
    """What the pass rule says about each metric, for the charts and the threshold sentence:
    ``mean`` (the bound on this round's mean or CI), ``pass_rate`` (the rule counts answers at or
    above the per-answer threshold), ``relative`` (compared with another round)."""
    out: dict[str, dict] = {}
    for r in ev["rule"]:
        bound = r["min"] if r["min"] is not None else r["above"]
        kind = "relative" if r["vs"] else "pass_rate" if r["stat"] == "pass_rate" else "mean"
        out.setdefault(r["metric"], {})[kind] = bound if kind == "mean" else True
    return out
