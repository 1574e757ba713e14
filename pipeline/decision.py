"""The decision after a round, from its evaluation and the budget: pure, no side effects. ``decide`` stores it and
dispatches; ``report`` states it before ``decide`` runs.

``pass`` when the round's verdict passes. Otherwise ``stop-no-service`` when no service LLM can synthesize more
data (another round would re-train on the same rows); ``stop-plateau`` when the last ``budget.patience`` rounds
each failed to beat the round before them on the decision metric with a CI above 0 (more data stopped helping);
``stop-budget`` when a budget limit is reached; else ``continue`` with the next round's synthetic target.
"""

from __future__ import annotations

from .budget import spent_in_store
from .config import Config
from .evaluate import BASELINE_ROUND, read_metrics
from .formatting import rule_row, signed
from .store import Store, artifact_name

DECISIONS = ("pass", "continue", "stop-plateau", "stop-budget", "stop-no-service")


def synthetic_by_round(store: Store, round_no: int) -> dict[int, int]:
    """Synthetic rows kept in each round k <= ``round_no`` that has a synthesize artifact (manifest ``kept``)."""
    out = {}
    for k in range(1, int(round_no) + 1):
        name = artifact_name("synthesize", k)
        if store.exists(name):
            out[k] = int((store.manifest(name).counts or {}).get("kept") or 0)
    return out


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


def _limits(cfg: Config, round_no: int, synthetic: int, next_samples: int, spend: float) -> list[str]:
    b, limits = cfg.budget, []
    if round_no >= b.max_rounds:
        limits.append(f"{round_no} of budget.max_rounds={b.max_rounds} rounds done")
    if synthetic + next_samples > b.max_synthetic_samples:
        limits.append(f"{synthetic} synthetic rows so far + {next_samples} for round {round_no + 1} would pass "
                      f"budget.max_synthetic_samples={b.max_synthetic_samples}")
    if spend >= b.max_spend_usd:
        limits.append(f"spent ${spend:.2f} of budget.max_spend_usd=${b.max_spend_usd:.2f}")
    return limits


def decision(cfg: Config, store: Store, round_no: int) -> dict:
    """Decide after round ``round_no`` without side effects; the ``decision.json`` dict (docs/contracts.md)."""
    round_no = int(round_no)
    ev = read_metrics(store, round_no, "duo decide")
    spend = round(spent_in_store(store, exclude=artifact_name("decide", round_no)), 6)
    synthetic = sum(synthetic_by_round(store, round_no).values())
    next_samples = int(cfg.synthesize.target_for_round(round_no + 1))
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
    limits = _limits(cfg, round_no, synthetic, next_samples, spend)
    if limits:
        return {"decision": "stop-budget", "reason": f"{failing}; the budget is spent: " + "; ".join(limits), **out}
    out.update(next_round=round_no + 1, next_samples=next_samples)
    return {"decision": "continue", "reason": f"{failing}; the budget allows round {round_no + 1} with "
            f"{next_samples} more synthetic samples", **out}

