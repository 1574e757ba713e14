"""The best round so far, from the store's scores, and the round whose adapter to use.

Walk the evaluated rounds from 1 in order, on the decision metric (``metrics.json`` ``decision_metric``
of the last round walked): the first is the best; a later round ``k`` replaces the best ``b`` only
when its mean is higher AND it is not significantly worse than ``b``: the paired difference ``k - b``
over the prompts both scored (per-prompt means of ``scores.jsonl``, ``paired_diff`` with
``evaluate.bootstrap_samples`` and ``evaluate.confidence``) is not ``worse`` (``change_word``). Round 0,
the untuned baseline, is never a candidate: it has no adapter.

:func:`walk` is the pure rule; :func:`standings` reads the rounds from the store; :func:`adapter_round`
picks the adapter ``duo pull``, ``duo export`` and the report use: the promoted round, else the best
round, else the latest fine-tuned round (rejected rounds skipped).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from ..artifacts.evaluate import read_metrics, read_scores
from ..artifacts.promote import choose_round, promotions, rejected_rounds
from ..config import Config
from ..errors import DuoError
from ..formatting import num
from ..store import BASELINE_ROUND, Store, round_of
from .decision_parts import is_regression
from .paired import change_word, cluster_means, paired_diff

NEEDED_BY = "the best round"


@dataclass(frozen=True)
class Scored:
    """One evaluated round on the decision metric: its mean and its per-prompt means
    (``{prompt id: mean}``)."""

    round: int
    mean: float | None
    per_prompt: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Standing:
    """Where round ``round`` stands among the evaluated rounds 1..``round``.

    Args:
        metric: the decision metric; ``mean`` this round's mean on it.
        best, best_mean: the best round so far, this one included, and its mean.
        before, before_mean: the best round before this one (None: this is the first evaluated round).
        vs_before: the paired difference this round - ``before`` (``paired_diff`` plus ``change``),
            None when there is no round before.
    """

    round: int
    metric: str | None
    mean: float | None
    best: int
    best_mean: float | None
    before: int | None = None
    before_mean: float | None = None
    vs_before: Mapping | None = None

    @property
    def regressed(self) -> bool:
        """True when this round is worse than the best round before it: significantly (``worse``), or
        with its CI's upper end within Monte-Carlo error of 0 on the worse side (``borderline`` with a
        negative difference). A borderline regression stops the loop too: another round of more data
        on top of a round that did no better is what the loop must not buy blindly."""
        return is_regression(self.vs_before)


def walk(rounds: Sequence[Scored], metric: str | None, *, samples: int,
         confidence: float) -> dict[int, Standing]:
    """Each round's standing (round -> :class:`Standing`), walking ``rounds`` in round order; a round
    without a mean cannot be compared and is left out."""
    out: dict[int, Standing] = {}
    best: Scored | None = None
    for r in sorted((r for r in rounds if r.mean is not None), key=lambda r: r.round):
        if best is None:
            best = r
            out[r.round] = Standing(r.round, metric, r.mean, r.round, r.mean)
            continue
        d = paired_diff(r.per_prompt, best.per_prompt, samples=samples, confidence=confidence)
        d = {**d, "change": change_word(d)}
        before = best
        if r.mean > best.mean and d["change"] != "worse":
            best = r
        out[r.round] = Standing(r.round, metric, r.mean, best.round, best.mean, before.round, before.mean, d)
    return out


def evaluated_rounds(store: Store, up_to: int | None = None) -> list[int]:
    """The rounds >= 1 (at most ``up_to``) with an evaluate artifact, in order."""
    found = {round_of(n) for n in store.list("round-") if n.endswith("/evaluate")} - {None}
    return sorted(k for k in found if k > BASELINE_ROUND and (up_to is None or k <= up_to))


def scored(store: Store, round_no: int, metric: str | None, metrics: Mapping) -> Scored:
    """Round ``round_no`` on ``metric``: the mean its ``metrics.json`` (``metrics``) reports (the
    per-prompt means' mean when it has none) and the per-prompt means of its ``scores.jsonl``."""
    rows = read_scores(store, round_no) or []
    per_prompt = cluster_means([(r.get("scores") or {}).get(metric) for r in rows],
                               [str(r.get("id")) for r in rows])
    mean = ((metrics.get("metrics") or {}).get(metric) or {}).get("mean")
    if mean is None and per_prompt:
        mean = sum(per_prompt.values()) / len(per_prompt)
    return Scored(round_no, mean, per_prompt)


def standings(cfg: Config, store: Store, up_to: int | None = None, *,
              skip: Collection[int] = ()) -> dict[int, Standing]:
    """Every evaluated round's standing up to round ``up_to`` (default: all), leaving out the rounds in
    ``skip`` (rejected in review) and those whose evaluation cannot be read (as the report's trend
    does); {} when no round >= 1 was evaluated."""
    found = {}
    for k in evaluated_rounds(store, up_to):
        if k in skip:
            continue
        try:
            found[k] = read_metrics(store, k, NEEDED_BY)
        except DuoError:
            continue
    if not found:
        return {}
    metric = found[max(found)].get("decision_metric")
    opts = {"samples": cfg.evaluate.bootstrap_samples, "confidence": cfg.evaluate.confidence}
    return walk([scored(store, k, metric, doc) for k, doc in found.items()], metric, **opts)


def latest(found: Mapping[int, Standing]) -> Standing | None:
    """The standing of the last round walked: its ``best`` is the best round so far."""
    return found[max(found)] if found else None


def standing_text(s: Standing) -> str:
    """``the best evaluated round on rougeL, mean 0.265``: why a round's adapter is the one to use."""
    return f"the best evaluated round on {s.metric}, mean {num(s.best_mean)}"


def adapter_round(cfg: Config, store: Store, up_to: int | None = None) -> tuple[int, str | None, str]:
    """(round, pinned commit or None, why) of the adapter to use after round ``up_to`` (default: the
    latest): the promoted round, else the best round (:func:`standings`, rejected rounds left out),
    else the latest fine-tuned round; rejected rounds are skipped."""
    rejected = rejected_rounds(promotions(store))
    best = latest(standings(cfg, store, up_to, skip=rejected))
    chosen = None if best is None else (best.best, standing_text(best))
    return choose_round(store, chosen, up_to=up_to)

