"""The decision after a round, from plain facts: pure, no I/O. ``decision_facts`` gathers the facts
from the store; ``decision_text`` renders the decision (``reason``, the report's summary,
``decision.json``).

The checks, in order (the first that holds decides):

1. ``pass``: the round's verdict passes.
2. A round that was not evaluated (its synthesis kept no rows, so it was not fine-tuned):
   ``stop-budget`` when money is why (the spend cap refused every request, the budget ran out, or
   ``budget.max_synthetic_samples`` left nothing to ask for), else ``stop-no-data``.
3. ``stop-no-service``: no service LLM can synthesize more data (another round would re-train on
   the same rows).
4. ``stop-regressed``: the round is significantly worse than the best round so far on the decision
   metric (``pipeline.stats.best``), unless ``budget.on_regression: continue``.
5. ``stop-no-data``: the round's synthesis kept less than ``synthesize.min_yield`` of the pairs it
   asked for (or none at all), and money was not why.
6. ``stop-plateau``: the last ``budget.patience`` rounds each failed to beat the round before them
   on the decision metric with a CI above 0 (more data stopped helping).
7. ``stop-budget``: a budget limit is reached (``max_rounds``, ``max_synthetic_samples``,
   ``max_spend_usd``, the next round's estimated cost).
8. ``continue`` with the next round's synthetic target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .decision_parts import Best, Condition, Gain, Limit, NextCost, RoundGain, Synthesis

if TYPE_CHECKING:
    from ..config_types import BudgetConfig

__all__ = ["DECISIONS", "Best", "Condition", "Decision", "Facts", "Gain", "Limit", "NextCost", "RoundGain",
           "Synthesis", "budget_limits", "decide", "is_flat", "plateau_rounds"]

DECISIONS = ("pass", "continue", "stop-plateau", "stop-budget", "stop-no-service", "stop-regressed",
             "stop-no-data")


@dataclass(frozen=True)
class Facts:
    """Everything the decision after round ``round`` depends on, as plain values.

    Args:
        verdict: ``pass`` or ``fail``; None when the round was not evaluated (its synthesis added no rows).
        rule: the pass rule's checked rows; ``rule_kind`` names the rule (``offline``, ``judge`` ...).
        judge_stopped: the judge was cut short by the spend budget.
        metric, evidence: the decision metric and its paired gains over the baseline and the previous round.
        previous_round: the round the evaluation compared with as "previous" (0: the baseline; None: none).
        history: the rounds from this one back, each against the round before it
            (see :func:`plateau_rounds`).
        spend_usd, synthetic_total: spent and synthetic rows kept so far.
        next_samples, next_cost: the next round's synthetic target and its estimated cost.
        can_synthesize: a service LLM is configured to synthesize more data.
        no_new_rows: this round's synthesis kept no rows (nothing new to train).
        synthesis: what this round's synthesis did (None: none ran).
        min_yield: ``synthesize.min_yield``.
        best: the best round so far and this round against the best before it (None: none evaluated).
        budget: ``cfg.budget`` (``max_rounds``, ``max_synthetic_samples``, ``max_spend_usd``,
            ``patience``, ``on_regression``).
        confidence: the CI level of the gains.
    """

    round: int
    verdict: str | None
    budget: BudgetConfig
    rule_kind: str = "pass"
    rule: tuple[Condition, ...] = ()
    judge_stopped: bool = False
    metric: str | None = None
    evidence: tuple[Gain, ...] = ()
    previous_round: int | None = None
    history: tuple[RoundGain, ...] = ()
    spend_usd: float = 0.0
    synthetic_total: int = 0
    next_samples: int = 0
    next_cost: NextCost = field(default_factory=NextCost)
    can_synthesize: bool = True
    no_new_rows: bool = False
    synthesis: Synthesis | None = None
    min_yield: float = 0.5
    best: Best | None = None
    confidence: float = 0.95


@dataclass(frozen=True)
class Decision:
    """The decision after round ``round``: its ``code`` (one of ``DECISIONS``) and what it rests on.

    ``conditions`` are the pass rule's rows, ``limits`` the budget limits that stopped the rounds,
    ``evidence`` the gains on ``metric``; ``plateau_rounds`` the flat rounds behind
    ``stop-plateau``. ``evaluated`` is False for a round that stopped before fine-tuning (its
    synthesis added no rows). ``best`` is the best round so far (every decision carries it);
    ``synthesis`` the round's synthesis (the counts behind ``stop-no-data``); ``on_regression`` and
    ``min_yield`` the settings the decision applied.
    """

    code: str
    round: int
    conditions: tuple[Condition, ...] = ()
    limits: tuple[Limit, ...] = ()
    evidence: tuple[Gain, ...] = ()
    metric: str | None = None
    previous_round: int | None = None
    next_round: int | None = None
    next_samples: int | None = None
    spend_usd: float = 0.0
    synthetic_total: int = 0
    rule_kind: str = "pass"
    judge_stopped: bool = False
    plateau_rounds: tuple[int, ...] = ()
    patience: int = 0
    confidence: float = 0.95
    evaluated: bool = True
    best: Best | None = None
    synthesis: Synthesis | None = None
    min_yield: float = 0.5
    on_regression: str = "stop"

    def gain(self, against: str) -> Gain | None:
        """The evidence against ``baseline`` or ``previous``, or None when not compared."""
        return next((g for g in self.evidence if g.against == against), None)


def is_flat(g: RoundGain) -> bool:
    """True when a failing round's gain over the round before has a CI reaching 0 or below
    (no detectable gain)."""
    return g.ci_low is not None and g.ci_low <= 0 and not g.passed


def plateau_rounds(history: Sequence[RoundGain], patience: int) -> tuple[int, ...]:
    """The last ``patience`` rounds when each was flat (a plateau), latest first; () otherwise.

    ``history`` runs from the round decided back; it may end early (at the baseline, or after a round that
    gained: the rounds before it cannot make a plateau).
    """
    recent = tuple(history[:patience])
    if len(recent) == patience and all(is_flat(g) for g in recent):
        return tuple(g.round for g in recent)
    return ()


def budget_limits(f: Facts) -> tuple[Limit, ...]:
    """The budget limits that stop another round after ``f.round``; () when the budget allows one."""
    b, nxt, out = f.budget, f.round + 1, []
    if f.round >= b.max_rounds:
        out.append(Limit("max_rounds", f.round, b.max_rounds,
                         f"{f.round} of budget.max_rounds={b.max_rounds} rounds done"))
    if f.synthetic_total + f.next_samples > b.max_synthetic_samples:
        out.append(Limit("max_synthetic_samples",
                         f.synthetic_total + f.next_samples,
                         b.max_synthetic_samples,
                         f"{f.synthetic_total} synthetic rows so far + {f.next_samples} "
                         f"for round {nxt} would pass "
                         f"budget.max_synthetic_samples={b.max_synthetic_samples}"))
    c = f.next_cost
    if f.spend_usd >= b.max_spend_usd:
        out.append(Limit("max_spend_usd", f.spend_usd, b.max_spend_usd,
                         f"spent ${f.spend_usd:.2f} of budget.max_spend_usd=${b.max_spend_usd:.2f}"))
    elif f.spend_usd + c.synth_usd + c.judge_usd > b.max_spend_usd:
        out.append(Limit("next_round_cost",
                         f.spend_usd + c.synth_usd + c.judge_usd,
                         b.max_spend_usd,
                         f"the ${b.max_spend_usd - f.spend_usd:.2f} left of budget.max_spend_usd="
                         f"${b.max_spend_usd:.2f} cannot pay for round {nxt}: "
                         f"estimated synthesis ${c.synth_usd:.2f} "
                         f"({c.synth_requests} requests x ${c.synth_each:.4f}) "
                         f"+ judging ${c.judge_usd:.2f} "
                         f"({c.judge_requests} requests x ${c.judge_each:.4f})"))
    if f.no_new_rows:
        out.append(Limit("no_new_rows", 0, None, f"synthesis added no rows in round {f.round}"))
    return tuple(out)


def _unevaluated(f: Facts) -> Limit:
    """The limit of a round that stopped before fine-tuning for money: its synthesis kept nothing,
    and why."""
    e, cap = f.synthesis or Synthesis(), f.budget.max_spend_usd
    if e.refused_all:
        why = (f"the spend cap refused every request (none was sent): "
               f"the ${cap - f.spend_usd:.4f} left of budget.max_spend_usd=${cap:.4f} "
               "cannot pay for one; raise the budget to go on")
    elif e.budget_stopped:
        why = "the spend budget (budget.max_spend_usd) ran out"
    else:
        why = (f"budget.max_synthetic_samples={f.budget.max_synthetic_samples} left nothing to ask for"
               if e.capped else "it asked for no pairs")
    again = " again" if f.round > 1 else ""  # round 1 trains for the first time
    return Limit("no_new_rows", 0, None,
                 f"synthesis added no rows (kept 0), so it was not fine-tuned{again}: {why}")


def decide(f: Facts) -> Decision:
    """The decision after round ``f.round`` (see the module's docstring for the order of the checks)."""
    common = {"round": f.round, "spend_usd": f.spend_usd, "synthetic_total": f.synthetic_total,
              "patience": f.budget.patience, "confidence": f.confidence, "best": f.best,
              "synthesis": f.synthesis, "min_yield": f.min_yield, "on_regression": f.budget.on_regression}
    if f.verdict is None:
        if f.synthesis is not None and not f.synthesis.money:
            return Decision("stop-no-data", evaluated=False, **common)
        return Decision("stop-budget", limits=(_unevaluated(f),), evaluated=False, **common)
    common.update(conditions=f.rule, evidence=f.evidence, metric=f.metric, previous_round=f.previous_round,
                  rule_kind=f.rule_kind, judge_stopped=f.judge_stopped)
    if f.verdict == "pass":
        return Decision("pass", **common)
    if not f.can_synthesize:
        return Decision("stop-no-service", **common)
    if f.best is not None and f.best.regressed and f.budget.on_regression == "stop":
        return Decision("stop-regressed", **common)
    if f.synthesis is not None and f.synthesis.short(f.min_yield):
        return Decision("stop-no-data", **common)
    if flat := plateau_rounds(f.history, f.budget.patience):
        return Decision("stop-plateau", plateau_rounds=flat, **common)
    if limits := budget_limits(f):
        return Decision("stop-budget", limits=limits, **common)
    return Decision("continue", next_round=f.round + 1, next_samples=f.next_samples, **common)
