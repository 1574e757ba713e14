"""The plain values a decision after a round is made of (``pipeline.stats.decision``): the pass
rule's checked rows, the paired gains, the rounds' history, the next round's cost, the round's
synthesis, the best round so far and the budget limits reached. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from ..formatting import rule_row


def is_regression(d: Mapping | None) -> bool:
    """True when a paired difference (``paired_diff`` plus its ``change``) says the first side is worse:
    significantly (``worse``), or ``borderline`` with a negative difference (a CI bound within
    Monte-Carlo error of 0 on the worse side). The loop stops on either: more data on top of a round
    that did no better is what it must not buy blindly."""
    d = d or {}
    return d.get("change") == "worse" or (d.get("change") == "borderline" and (d.get("diff") or 0) < 0)



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
    """A paired difference on the decision metric: this round minus the baseline, the previous round or
    the best round before it."""

    metric: str | None
    against: str  # "baseline", "previous" or "best" (the best round before this one)
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
class Synthesis:
    """What the round's synthesis did (its manifest's counts).

    Args:
        asked: pairs it asked for (the round's target after ``budget.max_synthetic_samples``).
        kept, received, requests: pairs kept, pairs received, requests sent.
        failures: replies that failed (not the reply schema, or an error).
        removed: ``(reason, pairs)`` removed by each filter (``removed.jsonl`` reasons), most first.
        budget_stopped: the spend budget stopped it; ``refused_all``: the cap refused every request,
            so none was sent; ``capped``: ``budget.max_synthetic_samples`` cut its target.
    """

    asked: int = 0
    kept: int = 0
    received: int = 0
    requests: int = 0
    failures: int = 0
    removed: tuple[tuple[str, int], ...] = ()
    budget_stopped: bool = False
    refused_all: bool = False
    capped: bool = False

    @property
    def money(self) -> bool:
        """True when money, not the data, is why it kept too little: the spend budget stopped it,
        or the synthetic-samples budget left nothing to ask for."""
        return self.budget_stopped or self.refused_all or self.asked <= 0

    def short(self, min_yield: float) -> bool:
        """True when it kept less than ``min_yield`` of what it asked for (none counts), not for money."""
        return not self.money and (self.kept == 0 or self.kept < min_yield * self.asked)


@dataclass(frozen=True)
class Best:
    """The best round so far on the decision metric (:mod:`pipeline.stats.best`), and this round
    against the best round before it.

    Args:
        round, mean: the best round so far (this one included) and its mean on ``metric``.
        this_mean: this round's mean (None: not evaluated).
        before, before_mean: the best round before this one (None: this is the first).
        vs_before: this round minus ``before``, paired (``against`` = ``best``); None when not compared.
    """

    round: int
    mean: float | None
    metric: str | None = None
    this_mean: float | None = None
    before: int | None = None
    before_mean: float | None = None
    vs_before: Gain | None = None

    @property
    def regressed(self) -> bool:
        """This round is worse than the best before it (significantly, or borderline: ``is_regression``)."""
        g = self.vs_before
        return g is not None and is_regression({"change": g.change, "diff": g.diff})


@dataclass(frozen=True)
class Limit:
    """A budget limit that stops the rounds: ``value`` reached ``limit`` (None: not a number)."""

    name: str  # max_rounds, max_synthetic_samples, max_spend_usd, next_round_cost or no_new_rows
    value: float | None
    limit: float | None
    text: str
