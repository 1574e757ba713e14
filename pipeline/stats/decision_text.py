"""The words of a decision, all rendered from :class:`pipeline.stats.decision.Decision`: its
``reason`` (the CLI's line and ``decision.json``), the report's summary, the evidence sentence, the
PR title's tail and ``decision.json`` itself (docs/contracts.md).
"""

from __future__ import annotations

from dataclasses import asdict

from ..formatting import signed
from ..store.base import BASELINE_ROUND
from .decision import Decision, Gain

HEADLINES = {
    "pass": "✅ **Stop: the student passes.**",
    "stop-budget": "🛑 **Stop: the budget is spent.**",
    "stop-plateau": "🛑 **Stop: more data stopped helping (plateau).**",
    "stop-no-service": "🛑 **Stop: no service LLM to synthesize more data.**",
    "continue": "🔁 **Continue with another round.**",
}
# a gain in decision.json, as metrics.json has it
GAIN_KEYS = ("diff", "ci_low", "ci_high", "n", "sd", "change")


def gain_text(g: Gain | None, metric: str | None, against: str, confidence: float = 0.95) -> str:
    """``rougeL vs round 1: +0.012 (95% CI -0.004 to +0.03, n=40), no detectable change``."""
    if g is None:
        return f"{metric} vs {against}: not compared"
    return (f"{metric} vs {against}: {signed(g.diff)} ({confidence:.0%} CI {signed(g.ci_low)} to "
            f"{signed(g.ci_high)}, n={g.n}), {g.change}")


def evidence_text(d: Decision) -> str:
    """The gains on the decision metric in words: against the baseline, and the previous round when that is a
    tuned round."""
    if not d.evaluated:
        return "not evaluated"
    lines = [gain_text(d.gain("baseline"), d.metric, "the untuned baseline", d.confidence)]
    if d.previous_round not in (None, BASELINE_ROUND):
        lines.append(gain_text(d.gain("previous"), d.metric, f"round {d.previous_round}", d.confidence))
    return "; ".join(lines)


def _verdict(d: Decision, *, rows: bool) -> str:
    """``round 2 fails (FAIL: ...)``; without ``rows`` the failing rows are left out
    (a note that is not a row, like the judge cut short, stays when no row fails)."""
    if d.code == "pass":
        shown = "; ".join(c.text for c in d.conditions)
        return f"round {d.round} passes the {d.rule_kind} rule" + (f" ({shown})" if rows and shown else "")
    failing = [c.text for c in d.conditions if not c.ok]
    notes = failing + (["the judge was cut short by the spend budget"] if d.judge_stopped else [])
    is_baseline = not rows and d.round == BASELINE_ROUND and any(c.vs for c in d.conditions)
    head = f"round {d.round} is the baseline" if is_baseline else f"round {d.round} fails"
    if failing and not rows:
        return head
    return f"{head} ({'; '.join(notes) or 'the pass rule does not hold'})"


def _outcome(d: Decision) -> str | None:
    """What the decision does about a failing round."""
    if d.code == "stop-no-service":
        return ("no service LLM is configured for synthesis (service.synthesize), "
                "so another round would re-train on the same data")
    if d.code == "stop-plateau":
        return (f"rounds {', '.join(map(str, sorted(d.plateau_rounds)))} "
                f"each failed to beat the round before on {d.metric} "
                f"with a {d.confidence:.0%} CI above 0 (budget.patience={d.patience}): "
                "more data is not helping")
    if d.code == "stop-budget":
        return "the budget is spent: " + "; ".join(limit.text for limit in d.limits)
    if d.code == "continue":
        return f"the budget allows round {d.next_round} with {d.next_samples} more synthetic samples"
    return None


def reason(d: Decision) -> str:
    """The decision in one line: the verdict with its rule rows, the evidence, and what follows."""
    if not d.evaluated:
        return f"round {d.round}: " + "; ".join(limit.text for limit in d.limits)
    return "; ".join(p for p in (_verdict(d, rows=True), evidence_text(d), _outcome(d)) if p)


def summary(d: Decision) -> str:
    """The reason as the report states it: without the rule's rows and the evidence (the report
    shows each once, on its own), and round 0 under a relative rule named the baseline rather than
    failing."""
    if not d.evaluated:
        return reason(d)
    return "; ".join(p for p in (_verdict(d, rows=False), _outcome(d)) if p)


def next_step(code: str, next_round: int | None) -> str:
    """What follows the decision, for a title: ``next: round 3``, ``stop: plateau``; nothing after a pass."""
    if code == "pass":
        return ""
    if code == "continue":
        return f"next: round {next_round}"
    return "stop: " + code.removeprefix("stop-").replace("-", " ")


def _gain_record(g: Gain | None) -> dict | None:
    return None if g is None else {k: getattr(g, k) for k in GAIN_KEYS}


def record(d: Decision) -> dict:
    """``decision.json`` (docs/contracts.md)."""
    return {"decision": d.code, "reason": reason(d), "round": d.round, "next_round": d.next_round,
            "next_samples": d.next_samples, "spend_usd": d.spend_usd, "synthetic_total": d.synthetic_total,
            "evidence": {"metric": d.metric, "vs_baseline": _gain_record(d.gain("baseline")),
                         "vs_previous": _gain_record(d.gain("previous")), "text": evidence_text(d)},
            "conditions": [asdict(c) for c in d.conditions], "limits": [asdict(limit) for limit in d.limits]}
