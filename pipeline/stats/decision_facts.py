"""The facts the decision after a round rests on, read from the store: the round's evaluation, the
gains of the rounds before it, the best round so far, the round's synthesis, the spend so far, the
synthetic rows kept and the next round's estimated cost. Reads only;
:func:`pipeline.stats.decision.decide` decides from them.
"""

from __future__ import annotations

import math

from ..artifacts.evaluate import read_metrics
from ..artifacts.synthesize import no_new_rows, refused_all, synthetic_by_round
from ..config import Config
from ..store import BASELINE_ROUND, Store, artifact_name
from .best import standings
from .budget import spent_in_store
from .decision import (
    Best,
    Condition,
    Decision,
    Facts,
    Gain,
    NextCost,
    RoundGain,
    Synthesis,
    decide,
    is_flat,
)

NEEDED_BY = "duo decide"


def decide_round(cfg: Config, store: Store, round_no: int) -> Decision:
    """The decision after round ``round_no``, without side effects."""
    return decide(round_facts(cfg, store, round_no))


def round_facts(cfg: Config, store: Store, round_no: int) -> Facts:
    """Everything the decision after round ``round_no`` depends on; ArtifactMissing when
    the round was neither evaluated nor stopped by a synthesis that added no rows."""
    round_no = int(round_no)
    next_samples = int(cfg.synthesize.target_for_round(round_no + 1))
    spent = spent_in_store(store, exclude=artifact_name("decide", round_no), up_to_round=round_no)
    common = {
        "round": round_no,
        "budget": cfg.budget,
        "confidence": cfg.evaluate.confidence,
        "spend_usd": round(spent, 6),
        "synthetic_total": sum(synthetic_by_round(store, round_no).values()),
        "next_samples": next_samples,
        "can_synthesize": cfg.service.synthesize is not None,
        "no_new_rows": no_new_rows(store, round_no),
        "synthesis": synthesis(cfg, store, round_no),
        "min_yield": cfg.synthesize.min_yield,
        "best": best_so_far(cfg, store, round_no),
    }
    if common["no_new_rows"] and not store.exists(artifact_name("evaluate", round_no)):
        # the round stopped before fine-tuning (duo run; duo finetune refuses): nothing to evaluate
        return Facts(verdict=None, **common)
    ev = read_metrics(store, round_no, NEEDED_BY)
    metric = ev.get("decision_metric")
    evidence = tuple(Gain.from_diff(metric, against, d) for against in ("baseline", "previous")
                     if (d := (ev.get(f"vs_{against}") or {}).get(metric)))
    return Facts(verdict=ev["verdict"], rule_kind=ev.get("rule_kind", "pass"),
                 rule=tuple(Condition.from_row(r) for r in ev.get("rule", [])),
                 judge_stopped=ev.get("stopped") == "budget", metric=metric, evidence=evidence,
                 previous_round=ev.get("previous_round"),
                 history=gains_back(store, round_no, cfg.budget.patience),
                 next_cost=next_round_cost(cfg, store, round_no, next_samples), **common)


def gains_back(store: Store, round_no: int, depth: int) -> tuple[RoundGain, ...]:
    """Each round's gain over the round before it on its decision metric, from ``round_no`` back
    through the ``previous_round`` links: at most ``depth`` rounds, ending at the baseline or after
    a round that was not flat (the rounds before it cannot make a plateau, so they are not read)."""
    out, k = [], round_no
    while len(out) < depth and k is not None and k > BASELINE_ROUND:
        ev = read_metrics(store, k, NEEDED_BY)
        d = (ev.get("vs_previous") or {}).get(ev.get("decision_metric")) or {}
        out.append(RoundGain(k, d.get("ci_low"), ev.get("verdict") == "pass"))
        if not is_flat(out[-1]):
            break
        k = ev.get("previous_round")
    return tuple(out)


def mean_cost_per_request(store: Store, stage: str, round_no: int) -> float | None:
    """Mean USD per paid request of ``stage`` over rounds 0..``round_no`` (from the manifests);
    None: none paid."""
    cost, paid = 0.0, 0
    for k in range(int(round_no) + 1):
        name = artifact_name(stage, k)
        if not store.exists(name):
            continue
        usage = store.manifest(name).usage or {}
        n = int(usage.get("requests") or 0) - int(usage.get("cached") or 0)
        # this run's new spend: a carried cost belongs to requests counted in the manifest
        # it replaced
        if n > 0:
            paid += n
            cost += float(usage.get("new_cost_usd", usage.get("cost_usd")) or 0.0)
    return cost / paid if paid else None


def next_round_cost(cfg: Config, store: Store, round_no: int, next_samples: int) -> NextCost:
    """The estimated cost of round ``round_no + 1``'s synthesis and judging,
    from the mean cost per request so far (0 where unknown)."""
    synth_each = mean_cost_per_request(store, "synthesize", round_no) or 0.0
    synth_requests = (math.ceil(next_samples / cfg.synthesize.pairs_per_request)
                      if cfg.service.synthesize else 0)
    judge_each = mean_cost_per_request(store, "evaluate", round_no) or 0.0
    judge_requests = 0
    name = artifact_name("evaluate", round_no)
    # a round judges the same test answers: as many requests as this one
    if judge_each and store.exists(name):
        judge_requests = int((store.manifest(name).usage or {}).get("requests") or 0)
    return NextCost(synth_requests, synth_each, judge_requests, judge_each)


def synthesis(cfg: Config, store: Store, round_no: int) -> Synthesis | None:
    """What round ``round_no``'s synthesis did, from its manifest (None: no synthesis ran); what it
    asked for is its ``requested`` count, else the config's target for the round."""
    name = artifact_name("synthesize", round_no)
    if not store.exists(name):
        return None
    m = store.manifest(name)
    c, x = m.counts or {}, m.extra or {}
    asked = c.get("requested")
    removed = c.get("removed") if isinstance(c.get("removed"), dict) else {}
    by_count = sorted(((str(k), int(v)) for k, v in removed.items() if v), key=lambda kv: (-kv[1], kv[0]))
    return Synthesis(asked=int(cfg.synthesize.target_for_round(round_no) if asked is None else asked),
                     kept=int(c.get("kept") or 0), received=int(c.get("received") or 0),
                     requests=int(c.get("requests") or 0), failures=int(c.get("failures") or 0),
                     removed=tuple(by_count), budget_stopped=x.get("stopped") == "budget",
                     refused_all=refused_all(store, round_no),
                     capped=bool(x.get("capped_by_max_synthetic_samples")))


def best_so_far(cfg: Config, store: Store, round_no: int) -> Best | None:
    """The best round among the evaluated rounds 1..``round_no`` and round ``round_no`` against the
    best round before it (:mod:`pipeline.stats.best`); None when none was evaluated."""
    found = standings(cfg, store, round_no)
    if not found:
        return None
    if (s := found.get(round_no)) is None:  # this round was not evaluated: the best of those before
        last = found[max(found)]
        return Best(last.best, last.best_mean, last.metric, before=last.best, before_mean=last.best_mean)
    vs = None if s.vs_before is None else Gain.from_diff(s.metric, "best", s.vs_before)
    return Best(s.best, s.best_mean, s.metric, this_mean=s.mean, before=s.before, before_mean=s.before_mean,
                vs_before=vs)
