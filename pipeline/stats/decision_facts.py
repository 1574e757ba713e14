"""The facts the decision after a round rests on, read from the store: the round's evaluation, the
gains of the rounds before it, the spend so far, the synthetic rows kept and the next round's
estimated cost. Reads only; :func:`pipeline.stats.decision.decide` decides from them.
"""

from __future__ import annotations

import math

from ..artifacts.evaluate import read_metrics
from ..artifacts.synthesize import no_new_rows, refused_all, synthetic_by_round
from ..config import Config
from ..store import BASELINE_ROUND, Store, artifact_name
from .budget import spent_in_store
from .decision import Condition, Decision, EmptySynthesis, Facts, Gain, NextCost, RoundGain, decide, is_flat

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
    }
    if common["no_new_rows"] and not store.exists(artifact_name("evaluate", round_no)):
        # the round stopped before fine-tuning (duo run; duo finetune refuses): nothing to evaluate
        return Facts(verdict=None, empty_synthesis=empty_synthesis(store, round_no), **common)
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


def empty_synthesis(store: Store, round_no: int) -> EmptySynthesis:
    """What round ``round_no``'s synthesis did when it kept no rows, from its manifest."""
    m = store.manifest(artifact_name("synthesize", round_no))
    c = m.counts or {}
    return EmptySynthesis((m.extra or {}).get("stopped") == "budget",
                          c.get("requests", 0),
                          c.get("received", 0),
                          c.get("failures", 0),
                          refused_all(store, round_no))
