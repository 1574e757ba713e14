"""``duo evaluate``: score the student's answers against the service LLM's, then apply the pass rule.

Input: ``round-N/infer/answers.jsonl`` (``id``, ``instruction``, ``reference``, ``category``, ``answer``).
Output ``round-N/evaluate``: ``scores.jsonl`` (per sample: every metric and each judge repeat with its reasons),
``metrics.json`` (means, pass rates, bootstrap CIs, per-category, the rule and the verdict) and
``judge_failures.jsonl`` (judge replies that stayed invalid after the engine's re-asks, with their raw text).

The LLM judge (as in LlamaDuo) scores ``similarity`` and ``precision`` 1-100, ``judge_repeats`` times per sample,
averaged. A sample whose repeats all failed has no judge score and is left out of the judge means. With no judge
configured the judge is skipped and ``evaluate.offline_pass_rule`` decides.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from .aggregate import apply_rule, by_category, summarize_all
from .config import Config
from .errors import DuoError
from .gha import set_output, step_summary
from .manifest import Manifest
from .metrics import JUDGE_METRICS, offline_scores
from .records import iter_jsonl, write_jsonl
from .schemas import first_problem
from .store import Store, artifact_name, latest_round, open_store

STAGE = "evaluate"
ZERO_USAGE = {"requests": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "cached": 0}


def config_hash(cfg: Config) -> str:
    """Hash of what changes this stage's output: the evaluate section, the judge service, its prompt and schema."""
    doc = {"evaluate": cfg.raw.get("evaluate"), "judge": (cfg.raw.get("service") or {}).get("judge")}
    if judge_enabled(cfg):  # an edited judge template or schema must redo the stage, as a config change does
        from .prompts import find_template, load_reply_schema

        doc["prompt"] = find_template(cfg, cfg.evaluate.prompt).read_text(encoding="utf-8")
        doc["schema"] = load_reply_schema(cfg, cfg.evaluate.schema)
    blob = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def judge_enabled(cfg: Config) -> bool:
    return cfg.service.judge is not None and any(m in cfg.evaluate.metrics for m in JUDGE_METRICS)


# --------------------------------------------------------------------------- input


def read_answers(path: Path) -> list[dict]:
    """The infer stage's answers, checked field by field; a bad row raises DuoError naming its line."""
    rows, seen = [], set()
    for lineno, row in iter_jsonl(path):
        for key in ("instruction", "reference"):
            if not isinstance(row.get(key), str):
                raise DuoError(f"{path}:{lineno}: field '{key}' is {_found(row, key)}; expected a string")
        if row.get("answer") is not None and not isinstance(row["answer"], str):
            raise DuoError(f"{path}:{lineno}: field 'answer' is {_found(row, 'answer')}; expected a string")
        if not isinstance(row.get("id"), (str, int)) or isinstance(row.get("id"), bool):
            raise DuoError(f"{path}:{lineno}: field 'id' is {_found(row, 'id')}; expected a string")
        key = str(row["id"])
        if key in seen:  # several sampled answers to one prompt: each is judged on its own
            key = f"{key}#{lineno}"
        seen.add(key)
        rows.append({**row, "answer": row.get("answer") or "", "_key": key})
    if not rows:
        raise DuoError(f"{path}: no answers to evaluate")
    return rows


def _found(row: dict, key: str) -> str:
    return "missing" if key not in row else f"{json.dumps(row[key])[:40]} ({type(row[key]).__name__})"


# --------------------------------------------------------------------------- judge


def _verdict(data, schema: dict) -> tuple[dict | None, str | None]:
    """One judge reply as ``{similarity, precision, *_reason}``, or (None, problem)."""
    problem = first_problem(data, schema)
    if problem is None:
        try:
            sim, prec = data["similarity_assessment"], data["precision_assessment"]
            return {"similarity": float(sim["score"]), "precision": float(prec["score"]),
                    "similarity_reason": str(sim["reason"]), "precision_reason": str(prec["reason"])}, None
        except (KeyError, TypeError, ValueError) as exc:  # a custom schema that does not require these keys
            problem = f"missing {exc}"
    return None, f"reply does not match {schema.get('title') or 'the judge schema'}: {problem}"


def run_judge(cfg: Config, store: Store, round_no: int, rows: list[dict], name: str
              ) -> tuple[dict, list[dict], dict, int]:
    """Ask the judge ``judge_repeats`` times per sample, within the spend budget.

    Returns (key -> list of verdicts, failure records, usage for the manifest, requests not sent for budget).
    """
    from .budget import Spend, spent_in_store
    from .llm import Engine, Request
    from .prompts import load_reply_schema, render

    svc = cfg.service.judge
    schema = load_reply_schema(cfg, cfg.evaluate.schema)
    planned = []
    for row in rows:
        messages = render(cfg, cfg.evaluate.prompt, instruction=row["instruction"], reference=row["reference"],
                          answer=row["answer"], category=row.get("category"))
        planned += [(Request(key=row["_key"], messages=messages, schema=schema, repeat=k),)
                    for k in range(cfg.evaluate.judge_repeats)]
    # The artifact being replaced keeps its spend in the ledger: its cost is carried into the new manifest.
    carried = float(store.manifest(name).usage.get("cost_usd") or 0.0) if store.exists(name) else 0.0
    spend = Spend(cfg, svc, spent_in_store(store, exclude=name), carried=carried)
    engine = Engine(svc, journal=store.journal_dir / f"round-{round_no}-{STAGE}.jsonl")
    verdicts: dict[str, list[dict]] = {row["_key"]: [] for row in rows}
    failures, sent = [], 0
    for chunk in spend.chunks(planned):
        results = engine.run([req for req, in chunk], desc=f"judge r{round_no}")
        sent += len(chunk)
        for res in results:
            spend.add(res)
            verdict, problem = _verdict(res.data, schema) if res.ok else (None, res.error or "failed")
            if verdict is not None:
                verdicts[res.key].append({**verdict, "repeat": res.repeat})
                continue
            raw = res.raw if res.raw is not None else (json.dumps(res.data) if res.data is not None else None)
            failures.append({"id": res.key, "repeat": res.repeat, "error": problem, "raw": raw,
                             "attempts": res.attempts})
    return verdicts, failures, spend.usage(), len(planned) - sent


# --------------------------------------------------------------------------- stage


def _rule(cfg: Config, judged: bool) -> tuple[list, str]:
    if judged or cfg.evaluate.offline_pass_rule is None:
        return cfg.evaluate.pass_rule, "judge" if judged else "offline"
    return cfg.evaluate.offline_pass_rule, "offline"


def _existing(cfg: Config, store: Store, name: str, chash: str, parents: list[Manifest]) -> Manifest | None:
    """The complete artifact when nothing that decides it changed, else None."""
    if not store.exists(name):
        return None
    m = store.manifest(name)
    # A judge cut short by the spend budget is redone (paid answers re-used) once the budget is raised.
    if m.extra.get("stopped") == "budget" and cfg.budget.max_spend_usd > float(m.extra.get("budget_usd") or 0):
        return None
    return m if m.config_hash == chash and m.parents == [p.as_parent() for p in parents] else None


def run(cfg: Config, store: Store, round_no: int | None = None, *, force: bool = False) -> Manifest:
    """Evaluate round ``round_no``'s answers; returns the manifest of ``round-N/evaluate``."""
    round_no = int(round_no or 1)
    name, infer_name = artifact_name(STAGE, round_no), artifact_name("infer", round_no)
    if not store.exists(infer_name):
        raise store.missing(infer_name, f"duo evaluate (round {round_no})")
    infer_m = store.manifest(infer_name)
    chash = config_hash(cfg)
    if not force and (done := _existing(cfg, store, name, chash, [infer_m])) is not None:
        return done
    rows = read_answers(store.open(infer_name) / "answers.jsonl")
    manifest = Manifest.start(STAGE, name, chash, round_no, parents=[infer_m])
    metrics = list(cfg.evaluate.metrics)

    judged = judge_enabled(cfg)
    verdicts, failures, usage, unsent = (run_judge(cfg, store, round_no, rows, name) if judged
                                         else ({}, [], dict(ZERO_USAGE), 0))
    scores: dict[str, list] = {}
    if judged:
        for metric in (m for m in metrics if m in JUDGE_METRICS):
            scores[metric] = [_avg([v[metric] for v in verdicts[r["_key"]]]) for r in rows]
    scores.update(offline_scores(metrics, [r["answer"] for r in rows], [r["reference"] for r in rows],
                                 embedding_model=cfg.evaluate.embedding_model))
    scores = {m: scores[m] for m in metrics if m in scores}  # the configured order

    ev = cfg.evaluate
    summaries = summarize_all(scores, ev.thresholds, samples=ev.bootstrap_samples, confidence=ev.confidence)
    conditions, rule_kind = _rule(cfg, judged)
    rule_rows, verdict = apply_rule(conditions, summaries)
    if unsent:  # a judge cut short by the spend budget cannot pass a round on the samples it did score
        verdict = "fail"
    unjudged = sum(1 for r in rows if not verdicts.get(r["_key"])) if judged else 0
    report = {
        "round": round_no, "n": len(rows), "judge": "llm" if judged else "skipped",
        "judge_model": cfg.service.judge.model if judged else None,
        "metrics": summaries,
        "by_category": by_category([r.get("category") for r in rows], scores, ev.thresholds),
        "rule": rule_rows, "rule_kind": rule_kind, "verdict": verdict, "judge_failures": unjudged,
    }
    if unsent:
        report["stopped"] = "budget"
        report["judge_requests_not_sent"] = unsent
    score_rows = []
    for i, r in enumerate(rows):
        out = {k: r.get(k) for k in ("id", "instruction", "category", "reference", "answer")}
        out["scores"] = {m: _round(v[i]) for m, v in scores.items()}
        out["judge"] = verdicts.get(r["_key"], [])
        if judged:
            out["judge_failed_repeats"] = ev.judge_repeats - len(out["judge"])
        score_rows.append(out)

    with store.write(name) as folder:
        write_jsonl(folder / "scores.jsonl", score_rows)
        write_jsonl(folder / "judge_failures.jsonl", failures)
        (folder / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        manifest.counts = {"samples": len(rows), "judged": len(rows) - unjudged if judged else 0,
                           "judge_failures": unjudged, "judge_failed_repeats": len(failures),
                           "judge_requests_not_sent": unsent}
        manifest.usage = {**ZERO_USAGE, **usage}
        manifest.models = {"judge": f"{cfg.service.judge.provider}:{cfg.service.judge.model}" if judged else None,
                           "embedding": ev.embedding_model if "embedding" in scores else None}
        manifest.extra = {"verdict": verdict, "rule_kind": rule_kind, "judge_repeats": ev.judge_repeats if judged
                          else 0, "stopped": "budget" if unsent else None, "budget_usd": cfg.budget.max_spend_usd}
        manifest.finish(folder).write(folder)
    return manifest


def _avg(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


# --------------------------------------------------------------------------- CLI


def _fmt(x) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"


def table(report: dict) -> str:
    """The metrics, the rule and the verdict as a markdown table (also fine on a terminal)."""
    lines = [f"Round {report['round']}: {report['n']} samples, judge {report['judge_model'] or 'skipped'}"
             + (f", {report['judge_failures']} unjudged" if report["judge_failures"] else ""), "",
             "| metric | mean | CI | pass rate | threshold | n |", "|---|---|---|---|---|---|"]
    for metric, s in report["metrics"].items():
        lines.append(f"| {metric} | {_fmt(s['mean'])} | {_fmt(s['ci_low'])}–{_fmt(s['ci_high'])} | "
                     f"{_fmt(s['pass_rate'])} | {_fmt(s['threshold'])} | {s['n']} |")
    lines.append("")
    for r in report["rule"]:
        mark = "ok" if r["ok"] else "FAIL"
        why = f" ({r['why']})" if r.get("why") else ""
        lines.append(f"- {mark}: {r['metric']} {r['stat']} = {_fmt(r['value'])} (needs >= {_fmt(r['min'])}){why}")
    if report.get("stopped") == "budget":
        lines.append(f"- FAIL: the spend budget ran out; {report['judge_requests_not_sent']} judge requests not sent")
    lines.append(f"\nVerdict ({report['rule_kind']} rule): **{report['verdict']}**")
    return "\n".join(lines)


def command(cfg: Config, args: argparse.Namespace) -> int:
    store = open_store(cfg)
    round_no = args.round or latest_round(store, "infer") or 1
    manifest = run(cfg, store, round_no, force=getattr(args, "force", False))
    report = json.loads((store.open(manifest.artifact) / "metrics.json").read_text(encoding="utf-8"))
    text = table(report)
    print(text)
    set_output("artifact", manifest.artifact)
    set_output("location", store.describe(manifest.artifact)["location"])
    set_output("verdict", report["verdict"])
    step_summary(f"### duo evaluate\n\n{text}")
    return 0
