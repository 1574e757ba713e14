"""The words of a decision, all rendered from :class:`pipeline.stats.decision.Decision`: its
``reason`` (the CLI's line and ``decision.json``), the report's summary, the evidence sentence, the
best round so far, the synthesis yield, the PR title's tail and ``decision.json`` itself
(docs/contracts.md).
"""

from __future__ import annotations

from dataclasses import asdict

from ..formatting import num, signed
from ..store.base import BASELINE_ROUND
from .decision import Decision, Gain, Synthesis

HEADLINES = {
    "pass": "✅ **Stop: the student passes.**",
    "stop-budget": "🛑 **Stop: the budget is spent.**",
    "stop-plateau": "🛑 **Stop: more data stopped helping (plateau).**",
    "stop-no-service": "🛑 **Stop: no service LLM to synthesize more data.**",
    "stop-regressed": "🛑 **Stop: this round is worse than the best round so far.**",
    "stop-no-data": "🛑 **Stop: synthesis is not delivering enough data.**",
    "continue": "🔁 **Continue with another round.**",
}
# The synthesis filters by their removal reason (``removed.jsonl``), and what to change when one
# removes most of what the service sent.
FILTER_NAMES = {"length_outlier": "the length band", "near_duplicate": "near-duplicates",
                "duplicate": "duplicates", "test_overlap": "decontamination (test overlap)",
                "semantic_contaminated": "semantic decontamination", "empty": "empty pairs",
                "truncated": "truncated replies"}
REWRITES = "the service writes the test prompts back: change the synthesis prompt or the seeds"
FILTER_ADVICE = {
    "length_outlier": "widen synthesize.length_filter, or ask the service for answers as long as the seeds'",
    "near_duplicate": "vary the synthesis prompt or the seeds, or raise synthesize.near_duplicate_threshold",
    "duplicate": "vary the synthesis prompt or the seeds",
    "test_overlap": REWRITES,
    "semantic_contaminated": REWRITES,
    "empty": "check the synthesis prompt and the reply schema",
    "truncated": "raise the service's params.max_tokens or lower synthesize.pairs_per_request",
}
FAILED_ADVICE = "check failures.jsonl: the replies do not fit the reply schema, or the service errs"
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


def yield_text(s: Synthesis, min_yield: float) -> str:
    """``kept 51 of 200 asked (26%; synthesize.min_yield=0.5), 625 pairs received from 130 requests:
    the length band removed the most, 572; near-duplicates 31; 2 failed replies``."""
    share = f"{s.kept / s.asked:.0%}" if s.asked else "–"
    head = (f"kept {s.kept} of {s.asked} asked ({share}; synthesize.min_yield={min_yield:g}), "
            f"{s.received} pairs received from {s.requests} requests")
    removed = [(FILTER_NAMES.get(r, r), n) for r, n in s.removed]
    failed = [f"{s.failures} failed replies (not the reply schema, or an error)"] if s.failures else []
    if removed:
        (top, n), rest = removed[0], [f"{name} {k}" for name, k in removed[1:]]
        return f"{head}: {'; '.join([f'{top} removed the most, {n}', *rest, *failed])}"
    if failed:
        return f"{head}: {failed[0]}"
    return f"{head}: the service sent too few pairs"


def yield_advice(s: Synthesis) -> str:
    """What to change about the filter that removed the most (the failed replies when nothing was removed)."""
    if s.removed:
        return FILTER_ADVICE.get(s.removed[0][0], "look at removed.jsonl")
    return FAILED_ADVICE if s.failures else "check the synthesis prompt and the service's replies"


def _no_data(d: Decision) -> str:
    s = d.synthesis or Synthesis()
    return (f"synthesis is not delivering data: {yield_text(s, d.min_yield)}; another round would ask "
            f"the same source for more: {yield_advice(s)}, or lower synthesize.min_yield")


def best_text(d: Decision) -> str | None:
    """``best so far: round 1 (rougeL 0.265); this round 0.239, -0.026 [-0.056, -0.001] vs round 1, worse``;
    None when no round was evaluated."""
    b = d.best
    if b is None:
        return None
    head = f"best so far: round {b.round} ({b.metric} {num(b.mean)})"
    if not d.evaluated:
        return f"{head}; round {d.round} was not evaluated"
    if b.before is None:
        return f"{head}, the first evaluated round"
    g = b.vs_before
    vs = (f"{signed(g.diff)} [{signed(g.ci_low)}, {signed(g.ci_high)}] vs round {b.before}, {g.change}"
          if g is not None else f"not compared with round {b.before}")
    if b.round == d.round:
        return f"{head}, this round; {vs} (the best before it, {num(b.before_mean)})"
    return f"{head}; this round {num(b.this_mean)}, {vs}"


def _regression(d: Decision) -> str:
    """``rougeL is significantly worse than round 1, the best round so far (0.265): -0.026 (95% CI ...)``."""
    b = d.best
    how = ("significantly worse" if b.vs_before is not None and b.vs_before.change == "worse"
           else "worse (borderline: a CI bound within Monte-Carlo error of 0)")
    return (f"{b.metric} is {how} than round {b.round}, the best round so far "
            f"({num(b.mean)}): {gain_text(b.vs_before, b.metric, f'round {b.round}', d.confidence)}")


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
    if d.code == "stop-regressed":
        return (f"{_regression(d)}; round {d.best.round}'s adapter stays the one to use "
                "(budget.on_regression=stop)")
    if d.code == "stop-no-data":
        return _no_data(d)
    if d.code == "stop-budget":
        return "the budget is spent: " + "; ".join(limit.text for limit in d.limits)
    if d.code == "continue":
        regressed = (f"{_regression(d)}, but budget.on_regression=continue: "
                     if d.best is not None and d.best.regressed else "")
        return (f"{regressed}the budget allows round {d.next_round} "
                f"with {d.next_samples} more synthetic samples")
    return None


def reason(d: Decision) -> str:
    """The decision in one line: the verdict with its rule rows, the evidence, and what follows."""
    if not d.evaluated and d.code == "stop-no-data":
        again = " again" if d.round > 1 else ""
        return f"round {d.round}: synthesis added no rows, so it was not fine-tuned{again}; {_no_data(d)}"
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


def _best_record(d: Decision) -> dict | None:
    b = d.best
    if b is None:
        return None
    return {"round": b.round, "metric": b.metric, "mean": b.mean, "this_mean": b.this_mean,
            "before": b.before, "before_mean": b.before_mean, "vs_before": _gain_record(b.vs_before),
            "text": best_text(d)}


def _synthesis_record(d: Decision) -> dict | None:
    s = d.synthesis
    if s is None:
        return None
    return {"asked": s.asked, "kept": s.kept, "received": s.received, "requests": s.requests,
            "failures": s.failures, "removed": dict(s.removed), "min_yield": d.min_yield,
            "text": yield_text(s, d.min_yield)}


def record(d: Decision) -> dict:
    """``decision.json`` (docs/contracts.md)."""
    return {"decision": d.code, "reason": reason(d), "round": d.round, "next_round": d.next_round,
            "next_samples": d.next_samples, "spend_usd": d.spend_usd, "synthetic_total": d.synthetic_total,
            "evidence": {"metric": d.metric, "vs_baseline": _gain_record(d.gain("baseline")),
                         "vs_previous": _gain_record(d.gain("previous")), "text": evidence_text(d)},
            "conditions": [asdict(c) for c in d.conditions], "limits": [asdict(limit) for limit in d.limits],
            "best": _best_record(d), "synthesis": _synthesis_record(d)}
