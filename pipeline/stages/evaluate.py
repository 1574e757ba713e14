"""``duo evaluate``: score the student's answers against the service LLM's,
compare them with the untuned baseline and the previous round, then apply the pass rule.

Input: ``round-N/infer/answers.jsonl`` (``id``, ``instruction``, ``reference``, ``category``,
``answer``, ``sample``), and the ``scores.jsonl`` of round 0 (the untuned baseline) and of the
previous evaluated round. Output ``round-N/evaluate``: ``scores.jsonl`` (per answer: every metric,
each judge repeat with its reasons, the pairwise verdicts), ``metrics.json`` (clustered summaries,
``baseline``, ``vs_baseline``, ``vs_previous``, ``power``, per-category, the rule and the verdict;
see docs/contracts.md) and ``judge_failures.jsonl``.

The LLM judge (as in LlamaDuo) scores ``similarity`` and ``precision`` 1-100, ``judge_repeats``
times per answer, averaged; with ``evaluate.pairwise`` it also says which answer is better (metric
``win_rate``). With no judge configured, ``evaluate.offline_pass_rule`` decides.
"""

from __future__ import annotations

import argparse
import json

from ..artifacts import ARTIFACTS, reusable
from ..artifacts.evaluate import JUDGE_METRICS, previous_round, read_ceiling, read_metrics, read_scores
from ..artifacts.infer import read_answers
from ..config import Config
from ..data import privacy
from ..flags import COMMON, Flag
from ..formatting import num, rule_row
from ..judging.ceiling import ask_for_round, asks_ceiling, ceiling_summary
from ..judging.scores import judges, score_with_judges
from ..manifest import Manifest, add_usage, zero_usage
from ..prices import check_prices
from ..records import read_jsonl, write_jsonl
from ..stats import evidence
from ..stats.metrics import offline_scores
from ..stats.seeds import seed_spread
from ..stats.task_kind import kind_report, kind_scores, round_kind, rule_for, with_thresholds
from ..store import BASELINE_ROUND, Store, artifact_name, open_store
from .common import publish, round_arg

STAGE = "evaluate"
FLAGS = COMMON + (Flag("--plan",
                       "Print what the judges would be sent (requests, tokens and dollars at most, "
                       "requests already in the journal, the first request) and exit: "
                       "nothing is sent or written.",
                       kind="switch"),)
ARTIFACT = ARTIFACTS[STAGE]


# --------------------------------------------------------------------------- stage


def _rule(cfg: Config, judged: bool, kind: str = "text") -> tuple[list, str]:
    """The rule in force; a structured kind's own rule when the configured one is left at its default."""
    if judged or cfg.evaluate.offline_pass_rule is None:
        return rule_for(cfg, kind, cfg.evaluate.pass_rule, "pass_rule"), "judge" if judged else "offline"
    return rule_for(cfg, kind, cfg.evaluate.offline_pass_rule, "offline_pass_rule"), "offline"


def _score_rows(cfg: Config, rows: list[dict], scores: dict, judged: dict) -> list[dict]:
    out = []
    for i, r in enumerate(rows):
        row = {k: r.get(k) for k in ("id", "sample", "instruction", "category", "reference", "answer")}
        if "seed" in r:  # the training seed of the adapter that answered (finetune.seeds)
            row["seed"] = r["seed"]
        row["scores"] = {m: None if v[i] is None else round(float(v[i]), 6) for m, v in scores.items()}
        row["judge"] = judged["verdicts"].get(r["_key"], [])
        if judged["on"]:
            row["judge_failed_repeats"] = cfg.evaluate.judge_repeats * judged["judges"] - len(row["judge"])
        if r["_key"] in judged.get("pairwise", {}):
            row["pairwise"] = judged["pairwise"][r["_key"]]
        out.append(row)
    return out


def run(cfg: Config, store: Store, round_no: int | None = None, *, force: bool = False) -> Manifest:
    """Evaluate round ``round_no``'s answers (round 0: the untuned baseline); returns the manifest."""
    from ..llm.journal.sync import artifact_ledger, booked

    round_no = 1 if round_no is None else int(round_no)
    ins = ARTIFACT.inputs(cfg, store, round_no)
    if (old := reusable(store, ins, force=force, budget_usd=cfg.budget.max_spend_usd)) is not None:
        return old
    rows = read_answers(store.open(artifact_name("infer", round_no)) / "answers.jsonl")
    manifest = ins.start()
    with privacy.tally() as scrubbed:  # what privacy.scrub took out of the judges' requests, by type
        ceiling = ask_for_round(cfg, store, round_no, rows, ins.name, STAGE)
        asked = rows + (ceiling.rows if ceiling else [])  # the service's second answers are scored alike
        judged = score_with_judges(cfg, store, round_no, asked, ins.name,
                                   already=ceiling.cost if ceiling else 0.0, carry=ceiling is None)
    kind, kind_why = round_kind(cfg, store)
    own = kind_scores(cfg, store, kind, asked)  # the kind's own metrics first (task.kind)
    scores = {**own, **judged["scores"]}
    scores.update(offline_scores(cfg.evaluate.metrics,
                                 [r["answer"] for r in asked],
                                 [r["reference"] for r in asked],
                                 embedding_model=cfg.evaluate.embedding_model))
    order = [*(m for m in own if m not in cfg.evaluate.metrics), *cfg.evaluate.metrics]
    scores = {m: scores[m] for m in order if m in scores}  # the kind's metrics, then the configured order
    n = len(rows)
    ceiling_rows = ([{**r, "model": ceiling.model}
                     for r in _score_rows(cfg, ceiling.rows, {m: v[n:] for m, v in scores.items()}, judged)]
                    if ceiling else read_ceiling(store))
    scores = {m: v[:n] for m, v in scores.items()}
    score_rows = _score_rows(cfg, rows, scores, judged)
    conditions, rule_kind = _rule(cfg, judged["on"], kind)
    prev = previous_round(store, round_no)
    found = evidence.build(score_rows, scores, ev=with_thresholds(cfg.evaluate), conditions=conditions,
                           baseline=(read_scores(store, BASELINE_ROUND)
                                     if round_no > BASELINE_ROUND else None),
                           previous=read_scores(store, prev) if prev is not None else None,
                           service=ceiling_rows)
    if ceiling:
        judged["usage"] = add_usage(ceiling.usage, judged["usage"])
    unsent = judged["unsent"] + (ceiling.unsent if ceiling else 0)
    if unsent:  # a judge cut short by the spend budget cannot pass a round on the samples it did score
        found["verdict"] = "fail"
    judge_scores = list(judged["scores"].values())
    unjudged = (sum(1 for i in range(len(rows)) if all(v[i] is None for v in judge_scores))
                if judge_scores else 0)
    report = {
        "round": round_no,
        "baseline_round": BASELINE_ROUND,
        "previous_round": prev,
        "n": found["metrics"] and max(s["n"] for s in found["metrics"].values()),
        "answers": len(rows),
        "judge": "llm" if judged["on"] else "skipped",
        "judge_model": judged["model"],
        "judge_repeats": cfg.evaluate.judge_repeats if judged["on"] else 0,
        **found,
        **kind_report(cfg, store, kind, kind_why, rows),
        "rule_kind": rule_kind,
        "judge_failures": unjudged,
        **({"panel": judged["panel"]} if judged.get("panel") else {}),
        **({"seed_spread": spread} if (spread := seed_spread(score_rows, list(scores))) else {}),
        **ceiling_summary(ceiling, ceiling_rows),
    }
    if unsent:
        report.update(stopped="budget", judge_requests_not_sent=unsent)
    with store.write(ins.name) as folder:
        write_jsonl(folder / "scores.jsonl", score_rows)
        write_jsonl(folder / "judge_failures.jsonl", judged["failures"])
        if ceiling:
            write_jsonl(folder / "ceiling.jsonl", ceiling_rows)
            write_jsonl(folder / "ceiling_failures.jsonl", ceiling.failures)
        (folder / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        manifest.counts = {
            "samples": len(rows),
            "prompts": report["n"],
            "judged": len(rows) - unjudged if judged["on"] else 0,
            "judge_failures": unjudged,
            "judge_failed_repeats": len(judged["failures"]),
            "judge_requests_not_sent": unsent,
            **({"ceiling_answers": len(ceiling.rows), "ceiling_failures": len(ceiling.failures)}
               if ceiling else {}),
        }
        # the ledger of every run (a crashed one's too): paid plus unknown-at-most
        manifest.usage = booked({**zero_usage(), **judged["usage"]},
                                artifact_ledger(store, STAGE, round_no))
        manifest.models = {
            "judge": judged["model"],
            "embedding": cfg.evaluate.embedding_model if "embedding" in scores else None,
            **({"ceiling": ceiling.model} if ceiling else {}),
        }
        manifest.extra = {
            "verdict": found["verdict"],
            "rule_kind": rule_kind,
            "judge_repeats": report["judge_repeats"],
            "stopped": "budget" if unsent else None,
            "budget_usd": cfg.budget.max_spend_usd,
        }
        manifest.extra["scrubbed"] = (privacy.counts_of(scrubbed)
                                      if privacy.enabled(cfg) and judged["on"] else None)
        manifest.finish(folder).write(folder)
    return manifest


# --------------------------------------------------------------------------- CLI


def table(report: dict) -> str:
    """The metrics, the comparisons, the rule and the verdict as markdown (also fine on a terminal)."""
    base, vs_base = report.get("baseline") or {}, report.get("vs_baseline") or {}
    lines = [f"Round {report['round']}: {report['n']} prompts "
             f"({report.get('answers', report['n'])} answers), "
             f"judge {report['judge_model'] or 'skipped'}"
             + (f", {report['judge_failures']} unjudged" if report["judge_failures"] else ""), "",
             "| metric | mean | CI | baseline | vs baseline (CI) | n |", "|---|---|---|---|---|---|"]
    for metric, s in report["metrics"].items():
        d = vs_base.get(metric) or {}
        change = (f"{num(d.get('diff'))} "
                  f"({num(d.get('ci_low'))}–{num(d.get('ci_high'))}) {d['change']}"
                  if d else "–")
        lines.append(f"| {metric} | {num(s['mean'])} | {num(s['ci_low'])}–{num(s['ci_high'])} | "
                     f"{num((base.get(metric) or {}).get('mean'))} | {change} | {s['n']} |")
    lines.append("")
    lines += [f"- {rule_row(r)}" for r in report["rule"]]
    if report.get("stopped") == "budget":
        lines.append("- FAIL: the spend budget ran out; "
                     f"{report['judge_requests_not_sent']} judge requests not sent")
    lines.append(f"\nVerdict ({report['rule_kind']} rule): **{report['verdict']}**")
    return "\n".join(lines)


def plan_rows(store: Store, round_no: int) -> tuple[list[dict], str | None]:
    """The answers the judges would see: round ``round_no``'s, else (not made yet) the last earlier
    round's, else the test split's references standing in for answers; and a note saying which stood
    in."""
    for k in range(round_no, -1, -1):
        name = artifact_name("infer", k)
        if store.exists(name):
            rows = read_answers(store.open(name) / "answers.jsonl")
            return rows, (None if k == round_no
                          else f"round {round_no} has no answers yet: round {k}'s stand in")
    if not store.exists("prepare"):
        raise store.missing("prepare", f"evaluate --plan (round {round_no})")
    test = read_jsonl(store.open("prepare") / "test.jsonl")
    rows = [{**r, "reference": r["response"], "answer": r["response"], "_key": str(r["id"])} for r in test]
    return rows, f"round {round_no} has no answers yet: the test references stand in (one answer per prompt)"


def plan(cfg: Config, store: Store, round_no: int, *, force: bool = False) -> tuple[list, list[str]]:
    """What ``run`` would send to the judges, as ``budget.PlanPart``s (answers x repeats per judge, plus both
    orders of the pairwise judge), and notes; sends nothing, writes no artifact."""
    from ..judging.absolute import plan_absolute
    from ..judging.ceiling import PREFIX, ceiling_service, plan_ceiling, prompts
    from ..judging.ceiling import journal_of as ceiling_journal
    from ..judging.pairwise import plan_pairwise
    from ..judging.panel import judge_journal, judge_labels
    from ..llm import Engine
    from ..llm.journal.sync import open_journal
    from ..prompts import load_reply_schema
    from ..stats.budget import PlanPart

    services, ceiling = judges(cfg), asks_ceiling(cfg, round_no)
    if not services and not ceiling:
        return [], ["no LLM judge is configured: offline metrics only, nothing to pay"]
    check_prices(cfg)
    if store.exists(artifact_name("infer", round_no)) and reusable(
            store, ARTIFACT.inputs(cfg, store, round_no), force=force, budget_usd=cfg.budget.max_spend_usd):
        return [], [f"round-{round_no}/evaluate is complete: it is reused"]
    rows, note = plan_rows(store, round_no)
    ev, journal = cfg.evaluate, open_journal(store, cfg, STAGE, round_no)
    parts = []
    if ceiling:
        svc, requests = ceiling_service(cfg), [p[0] for p in plan_ceiling(cfg, rows)]
        engine = Engine(svc, journal=ceiling_journal(journal), progress=False)
        parts.append(PlanPart.of(f"evaluate round {round_no}, the service once more (ceiling): "
                                 f"{len(requests)} test prompts", svc, requests, engine.in_journal(requests)))
        # the judges score the second answers too; the references stand in for them here
        rows = rows + [{**r, "answer": r["reference"], "_key": PREFIX + str(r["id"])} for r in prompts(rows)]
    if any(m in JUDGE_METRICS for m in ev.metrics):
        schema = load_reply_schema(cfg, ev.schema)
        for label, svc in zip(judge_labels(services), services):
            requests = [p[0] for p in plan_absolute(cfg, rows, template=ev.prompt, schema=schema,
                                                    repeats=ev.judge_repeats)]
            path = journal if len(services) == 1 else judge_journal(journal, label)
            parts.append(PlanPart.of(f"evaluate round {round_no}, judge {label}: "
                                     f"{len(rows)} answers x {ev.judge_repeats} repeats",
                                     svc,
                                     requests,
                                     Engine(svc, journal=path,
                                            progress=False).in_journal(requests)))
    if ev.pairwise or "win_rate" in ev.metrics:
        schema = load_reply_schema(cfg, ev.pairwise_schema)
        requests = [p[0] for p in plan_pairwise(cfg, rows, template=ev.pairwise_prompt, schema=schema)]
        path = journal.with_name(journal.stem + "-pairwise.jsonl")
        parts.append(PlanPart.of(f"evaluate round {round_no}, pairwise judge: "
                                 f"{len(rows)} answers x 2 orders",
                                 services[0],
                                 requests,
                                 Engine(services[0], journal=path,
                                        progress=False).in_journal(requests)))
    return parts, [note] if note else []


def command(cfg: Config, args: argparse.Namespace) -> int:
    store = open_store(cfg)
    round_no = round_arg(args, store, "infer")
    if args.plan:
        from ..stats.budget import plan_text, spent_in_store

        parts, notes = plan(cfg, store, round_no, force=args.force)
        print(plan_text(f"evaluate round {round_no}", parts, cfg, spent_in_store(store), tuple(notes)))
        return 0
    manifest = run(cfg, store, round_no, force=args.force)
    report = read_metrics(store, round_no, "duo evaluate")
    publish(store, manifest.artifact, table(report), title="duo evaluate", verdict=report["verdict"])
    return 0
