"""The decision after a round, from plain facts: pure, no I/O. ``decision_facts`` gathers the facts
from the store; ``decision_text`` renders the decision (``reason``, the report's summary,
``decision.json``).

``pass`` when the round's verdict passes. Otherwise ``stop-no-service`` when no service LLM can
synthesize more data (another round would re-train on the same rows); ``stop-plateau`` when the last
``budget.patience`` rounds each failed to beat the round before them on the decision metric with a
CI above 0 (more data stopped helping); ``stop-budget`` when a budget limit is reached; else
``continue`` with the next round's synthetic target. A round whose synthesis added no rows and that
was therefore never evaluated stops on the budget too (round 1 among them when the spend cap
refused every request: a budget smaller than one request).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ..formatting import rule_row

if TYPE_CHECKING:
    from ..config_types import BudgetConfig

DECISIONS = ("pass", "continue", "stop-plateau", "stop-budget", "stop-no-service")


@dataclass(frozen=True)
class Condition:
    """One checked row of the pass rule (a ``metrics.json`` ``rule`` row)."""

    metric: str
    stat: str = "mean"
    vs: str | None = None
    min: float | None = None
    above: float | None = None
    value: float | None = None
    ok: bool = False
    why: str | None = None

    @classmethod
    def from_row(cls, row: Mapping) -> Condition:
        return cls(row.get("metric"), row.get("stat", "mean"), row.get("vs"), row.get("min"),
                   row.get("above"), row.get("value"), bool(row.get("ok")), row.get("why"))

    @property
    def text(self) -> str:
        """``FAIL: similarity mean = 71.2 (needs >= 90)``."""
        return rule_row(asdict(self))


@dataclass(frozen=True)
class Gain:
    """A paired difference on the decision metric: this round minus the baseline or the previous round."""

    metric: str | None
    against: str  # "baseline" or "previous"
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    sd: float | None = None
    change: str | None = None

    @classmethod
    def from_diff(cls, metric: str | None, against: str, d: Mapping) -> Gain:
        return cls(metric, against, d.get("diff"), d.get("ci_low"), d.get("ci_high"), d.get("n"),
                   d.get("sd"), d.get("change"))


@dataclass(frozen=True)
class RoundGain:
    """How one round did against the round before it,
    on the decision metric (``ci_low`` None: not compared)."""

    round: int
    ci_low: float | None
    passed: bool = False


@dataclass(frozen=True)
class NextCost:
    """The estimated cost of the next round's synthesis and judging, at the mean cost per request so far."""

    synth_requests: int = 0
    synth_each: float = 0.0
    judge_requests: int = 0
    judge_each: float = 0.0

    @property
    def synth_usd(self) -> float:
        return self.synth_requests * self.synth_each

    @property
    def judge_usd(self) -> float:
        return self.judge_requests * self.judge_each


@dataclass(frozen=True)
class EmptySynthesis:
    """What a synthesis that kept no rows did (from its manifest); ``refused_all``: the spend cap
    refused every request, so none was sent."""

    budget_stopped: bool = False
    requests: int = 0
    received: int = 0
    failures: int = 0
    refused_all: bool = False


@dataclass(frozen=True)
class Limit:
    """A budget limit that stops the rounds: ``value`` reached ``limit`` (None: not a number)."""

    name: str  # max_rounds, max_synthetic_samples, max_spend_usd, next_round_cost or no_new_rows
    value: float | None
    limit: float | None
    text: str


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
        no_new_rows, empty_synthesis: this round's synthesis kept no rows, and what it did.
        budget: ``cfg.budget`` (``max_rounds``, ``max_synthetic_samples``, ``max_spend_usd``, ``patience``).
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
    next_cost: NextCost = NextCost()
    can_synthesize: bool = True
    no_new_rows: bool = False
    empty_synthesis: EmptySynthesis | None = None
    confidence: float = 0.95


@dataclass(frozen=True)
class Decision:
    """The decision after round ``round``: its ``code`` (one of ``DECISIONS``) and what it rests on.

    ``conditions`` are the pass rule's rows, ``limits`` the budget limits that stopped the rounds,
    ``evidence`` the gains on ``metric``; ``plateau_rounds`` the flat rounds behind
    ``stop-plateau``. ``evaluated`` is False for a round that stopped before fine-tuning (its
    synthesis added no rows).
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


def _empty_synthesis(f: Facts) -> Limit:
    """The limit of a round that stopped before fine-tuning: its synthesis kept nothing, and why."""
    e, cap = f.empty_synthesis or EmptySynthesis(), f.budget.max_spend_usd
    if e.refused_all:
        why = (f"the spend cap refused every request (none was sent): "
               f"the ${cap - f.spend_usd:.4f} left of budget.max_spend_usd=${cap:.4f} "
               "cannot pay for one; raise the budget to go on")
    elif e.budget_stopped:
        why = "the spend budget (budget.max_spend_usd) ran out"
    else:
        why = (f"{e.requests} requests, {e.received} pairs received, {e.failures} failures; "
               "every pair was removed or none came back")
    again = " again" if f.round > 1 else ""  # round 1 trains for the first time
    return Limit("no_new_rows", 0, None,
                 f"synthesis added no rows (kept 0), so it was not fine-tuned{again}: {why}")


def decide(f: Facts) -> Decision:
    """The decision after round ``f.round`` (see the module's docstring for the order of the checks)."""
    common = {"round": f.round, "spend_usd": f.spend_usd, "synthetic_total": f.synthetic_total,
              "patience": f.budget.patience, "confidence": f.confidence}
    if f.verdict is None:
        return Decision("stop-budget", limits=(_empty_synthesis(f),), evaluated=False, **common)
    common.update(conditions=f.rule, evidence=f.evidence, metric=f.metric, previous_round=f.previous_round,
                  rule_kind=f.rule_kind, judge_stopped=f.judge_stopped)
    if f.verdict == "pass":
        return Decision("pass", **common)
    if not f.can_synthesize:
        return Decision("stop-no-service", **common)
    if flat := plateau_rounds(f.history, f.budget.patience):
        return Decision("stop-plateau", plateau_rounds=flat, **common)
    if limits := budget_limits(f):
        return Decision("stop-budget", limits=limits, **common)
    return Decision("continue", next_round=f.round + 1, next_samples=f.next_samples, **common)
