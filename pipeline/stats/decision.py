"""The decision after a round, from its evaluation and the budget: pure, no side effects. ``decide`` stores it and
dispatches; ``report`` states it before ``decide`` runs.

``pass`` when the round's verdict passes. Otherwise ``stop-no-service`` when no service LLM can synthesize more
data (another round would re-train on the same rows); ``stop-plateau`` when the last ``budget.patience`` rounds
each failed to beat the round before them on the decision metric with a CI above 0 (more data stopped helping);
``stop-budget`` when a budget limit is reached; else ``continue`` with the next round's synthetic target.
"""

from __future__ import annotations

import math

from ..artifacts.evaluate import read_metrics
from ..artifacts.synthesize import no_new_rows, synthetic_by_round
from ..config import Config
from ..formatting import rule_row, signed
from ..store import BASELINE_ROUND, Store, artifact_name
from .budget import spent_in_store

DECISIONS = ("pass", "continue", "stop-plateau", "stop-budget", "stop-no-service")


def gain_text(d: dict | None, metric: str, against: str, confidence: float = 0.95) -> str:
    """``rougeL vs round 1: +0.012 (95% CI -0.004 to +0.03), no detectable change``."""
    if not d:
        return f"{metric} vs {against}: not compared"
    return (f"{metric} vs {against}: {signed(d.get('diff'))} ({confidence:.0%} CI {signed(d.get('ci_low'))} to "
            f"{signed(d.get('ci_high'))}, n={d.get('n')}), {d.get('change')}")


def evidence_of(ev: dict, confidence: float = 0.95) -> dict:
    """The paired differences behind a decision, on the decision metric."""
    metric = ev.get("decision_metric")
    base = (ev.get("vs_baseline") or {}).get(metric)
    prev = (ev.get("vs_previous") or {}).get(metric)
    prev_name = f"round {ev.get('previous_round')}" if ev.get("previous_round") not in (None, BASELINE_ROUND) \
        else "the untuned baseline"
    lines = [gain_text(base, metric, "the untuned baseline", confidence)]
    if ev.get("previous_round") not in (None, BASELINE_ROUND):
        lines.append(gain_text(prev, metric, prev_name, confidence))
    return {"metric": metric, "vs_baseline": base, "vs_previous": prev, "text": "; ".join(lines)}


def plateau(store: Store, round_no: int, patience: int) -> list[int] | None:
    """The rounds that failed to gain significantly over the round before them, when the last ``patience``
    rounds all did (a plateau); None otherwise."""
    flat, k = [], round_no
    while len(flat) < patience:
        if k is None or k <= BASELINE_ROUND:
            return None
        ev = read_metrics(store, k, "duo decide")
        d = (ev.get("vs_previous") or {}).get(ev.get("decision_metric"))
        if d is None or d.get("ci_low") is None or d["ci_low"] > 0 or ev.get("verdict") == "pass":
            return None
        flat.append(k)
        k = ev.get("previous_round")
    return flat


def _failing(ev: dict) -> str:
    bad = [rule_row(r) for r in ev.get("rule", []) if not r.get("ok")]
    if ev.get("stopped") == "budget":
        bad.append("the judge was cut short by the spend budget")
    return "; ".join(bad) or "the pass rule does not hold"


def mean_cost_per_request(store: Store, stage: str, round_no: int) -> float | None:
    """Mean USD per paid request of ``stage`` over rounds 0..``round_no`` (from the manifests); None: none paid."""
    cost, paid = 0.0, 0
    for k in range(int(round_no) + 1):
        name = artifact_name(stage, k)
        if not store.exists(name):
            continue
        usage = store.manifest(name).usage or {}
        n = int(usage.get("requests") or 0) - int(usage.get("cached") or 0)
        if n > 0:  # this run's new spend: a carried cost belongs to requests counted in the manifest it replaced
            paid += n
            cost += float(usage.get("new_cost_usd", usage.get("cost_usd")) or 0.0)
    return cost / paid if paid else None


def next_round_cost(cfg: Config, store: Store, round_no: int, next_samples: int) -> dict:
    """The estimated cost of round ``round_no + 1``'s synthesis and judging, from the mean cost per request so
    far: ``{synth_requests, synth_each, synth_usd, judge_requests, judge_each, judge_usd}`` (0 where unknown)."""
    synth_each = mean_cost_per_request(store, "synthesize", round_no) or 0.0
    synth_requests = math.ceil(next_samples / cfg.synthesize.pairs_per_request) if cfg.service.synthesize else 0
    judge_each = mean_cost_per_request(store, "evaluate", round_no) or 0.0
    judge_requests = 0
    name = artifact_name("evaluate", round_no)
    if judge_each and store.exists(name):  # a round judges the same test answers: as many requests as this one
        judge_requests = int((store.manifest(name).usage or {}).get("requests") or 0)
    return {"synth_requests": synth_requests, "synth_each": synth_each, "synth_usd": synth_requests * synth_each,
            "judge_requests": judge_requests, "judge_each": judge_each, "judge_usd": judge_requests * judge_each}


def _limits(cfg: Config, round_no: int, synthetic: int, next_samples: int, spend: float,
            next_cost: dict | None = None) -> list[str]:
    b, limits = cfg.budget, []
    if round_no >= b.max_rounds:
        limits.append(f"{round_no} of budget.max_rounds={b.max_rounds} rounds done")
    if synthetic + next_samples > b.max_synthetic_samples:
        limits.append(f"{synthetic} synthetic rows so far + {next_samples} for round {round_no + 1} would pass "
                      f"budget.max_synthetic_samples={b.max_synthetic_samples}")
    if spend >= b.max_spend_usd:
        limits.append(f"spent ${spend:.2f} of budget.max_spend_usd=${b.max_spend_usd:.2f}")
    elif next_cost and spend + next_cost["synth_usd"] + next_cost["judge_usd"] > b.max_spend_usd:
        c = next_cost
        limits.append(f"the ${b.max_spend_usd - spend:.2f} left of budget.max_spend_usd=${b.max_spend_usd:.2f} "
                      f"cannot pay for round {round_no + 1}: estimated synthesis ${c['synth_usd']:.2f} "
                      f"({c['synth_requests']} requests x ${c['synth_each']:.4f}) + judging ${c['judge_usd']:.2f} "
                      f"({c['judge_requests']} requests x ${c['judge_each']:.4f})")
    return limits


def decision(cfg: Config, store: Store, round_no: int) -> dict:
    """Decide after round ``round_no`` without side effects; the ``decision.json`` dict (docs/contracts.md)."""
    round_no = int(round_no)
    spend = round(spent_in_store(store, exclude=artifact_name("decide", round_no)), 6)
    synthetic = sum(synthetic_by_round(store, round_no).values())
    next_samples = int(cfg.synthesize.target_for_round(round_no + 1))
    if no_new_rows(store, round_no) and not store.exists(artifact_name("evaluate", round_no)):
        # the round stopped before fine-tuning (duo run; duo finetune refuses): nothing to evaluate
        return {"decision": "stop-budget", "reason": f"round {round_no}: synthesis added no rows (kept 0), so it was "
                f"not fine-tuned again: {_why_no_rows(store, round_no)}", "round": round_no, "next_round": None,
                "next_samples": None, "spend_usd": spend, "synthetic_total": synthetic,
                "evidence": {"metric": None, "vs_baseline": None, "vs_previous": None, "text": "not evaluated"}}
    ev = read_metrics(store, round_no, "duo decide")
    found = evidence_of(ev, cfg.evaluate.confidence)
    out = {"round": round_no, "next_round": None, "next_samples": None, "spend_usd": spend,
           "synthetic_total": synthetic, "evidence": found}
    failing = f"round {round_no} fails ({_failing(ev)}); {found['text']}"
    if ev["verdict"] == "pass":
        conds = "; ".join(rule_row(r) for r in ev.get("rule", []))
        return {"decision": "pass", "reason": f"round {round_no} passes the {ev.get('rule_kind', 'pass')} rule "
                f"({conds}); {found['text']}", **out}
    if cfg.service.synthesize is None:
        return {"decision": "stop-no-service", "reason": f"{failing}; no service LLM is configured for synthesis "
                "(service.synthesize), so another round would re-train on the same data", **out}
    flat = plateau(store, round_no, cfg.budget.patience)
    if flat:
        return {"decision": "stop-plateau", "reason": f"{failing}; rounds {', '.join(map(str, sorted(flat)))} each "
                f"failed to beat the round before on {found['metric']} with a {cfg.evaluate.confidence:.0%} CI above "
                f"0 (budget.patience={cfg.budget.patience}): more data is not helping", **out}
    limits = _limits(cfg, round_no, synthetic, next_samples, spend, next_round_cost(cfg, store, round_no, next_samples))
    if no_new_rows(store, round_no):
        limits.append(f"synthesis added no rows in round {round_no}")
    if limits:
        return {"decision": "stop-budget", "reason": f"{failing}; the budget is spent: " + "; ".join(limits), **out}
    out.update(next_round=round_no + 1, next_samples=next_samples)
    return {"decision": "continue", "reason": f"{failing}; the budget allows round {round_no + 1} with "
            f"{next_samples} more synthetic samples", **out}


def _why_no_rows(store: Store, round_no: int) -> str:
    """Why a round's synthesis kept nothing, from its manifest."""
    m = store.manifest(artifact_name("synthesize", round_no))
    if (m.extra or {}).get("stopped") == "budget":
        return "the spend budget (budget.max_spend_usd) ran out"
    c = m.counts or {}
    return (f"{c.get('requests', 0)} requests, {c.get('received', 0)} pairs received, {c.get('failures', 0)} "
            "failures; every pair was removed or none came back")
