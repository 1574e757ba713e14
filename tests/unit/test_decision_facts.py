"""The facts of a decision as ``pipeline.stats.decision_facts`` reads them from hand-built stores: the gains of the
rounds before (read back only as far as a plateau could reach), the judge cut short, a round that added no rows,
the evidence and the next round's cost.

Config (tests/round_artifacts.py): synthesize 1000 doubling; budget 3 rounds, 7000 synthetic rows, $5, patience 2.
"""

from __future__ import annotations

import pytest

from pipeline.artifacts.synthesize import no_new_rows
from pipeline.stats.decision import Gain, NextCost, RoundGain
from pipeline.stats.decision_facts import gains_back, round_facts
from pipeline.store import open_store
from tests.round_artifacts import build_baseline, build_prepare, build_round, make_config, put


@pytest.fixture
def cfg_store(tmp_path):
    cfg = make_config(tmp_path)
    store = open_store(cfg)
    build_prepare(store)
    return cfg, store


def _evaluated(store, k: int, ci_low: float | None, previous: int | None = None, **extra) -> None:
    """Round k's failing evaluation, whose gain over ``previous`` (default k - 1) has a CI starting at ``ci_low``."""
    gain = {"rougeL": {"diff": 0.0, "ci_low": ci_low, "ci_high": 0.05, "n": 40, "sd": 0.03, "change": "x"}}
    doc = {"round": k, "previous_round": k - 1 if previous is None else previous, "verdict": "fail",
           "decision_metric": "rougeL", "rule": [], "vs_previous": gain if ci_low is not None else {}, **extra}
    put(store, "evaluate", k, {"metrics.json": doc})


def test_gains_are_read_back_only_as_far_as_a_plateau_reaches(cfg_store):
    _, store = cfg_store
    _evaluated(store, 1, -0.1)  # its previous round, the baseline, has no artifact: it is never read
    assert gains_back(store, 1, 5) == (RoundGain(1, -0.1),)
    _evaluated(store, 3, -0.1, previous=2)  # round 2 is missing: reading it would fail
    assert gains_back(store, 3, 1) == (RoundGain(3, -0.1),)  # depth 1: round 2 is not needed
    _evaluated(store, 4, 0.2, previous=2)
    assert gains_back(store, 4, 5) == (RoundGain(4, 0.2),)  # round 4 gained: no plateau, whatever came before
    _evaluated(store, 5, None, previous=2)
    assert gains_back(store, 5, 5) == (RoundGain(5, None),)  # not compared: no plateau either


def test_facts_of_an_evaluated_round(cfg_store):
    cfg, store = cfg_store
    build_baseline(store)
    build_round(store, 1, sim=60, prec=70, kept=1000, synth_cost=2.0, judge_cost=0.25)
    build_round(store, 2, kept=0, extra={"stopped": "budget"})
    f = round_facts(cfg, store, 2)
    assert (f.round, f.verdict, f.rule_kind, f.metric, f.previous_round) == (2, "fail", "judge", "similarity", 1)
    assert f.judge_stopped and f.no_new_rows and f.can_synthesize
    # build_round's synthesis asked for what it kept: 0 of 0, nothing to ask for
    assert (f.synthesis.asked, f.synthesis.kept, f.synthesis.money) == (0, 0, True)
    assert [c.metric for c in f.rule] == ["similarity", "precision"] and not any(c.ok for c in f.rule)
    assert [g.against for g in f.evidence] == ["baseline", "previous"]
    assert f.evidence[1] == Gain("similarity", "previous", 11.2, 4.08, 18.32, 4, 7.12, "better")
    assert (f.synthetic_total, f.next_samples) == (1000, 4000)
    assert f.spend_usd == pytest.approx(2.0 + 0.25 + 0.5 + 0.25)
    # synthesis so far: $2.50 over 200 + 1 requests; judging $0.50 over 24: round 3 asks 800 and judges 12
    assert f.next_cost == NextCost(800, pytest.approx(2.5 / 201), 12, pytest.approx(0.5 / 24))
    assert f.history == (RoundGain(2, 4.08),)


def test_facts_of_a_round_stopped_before_fine_tuning(cfg_store):
    cfg, store = cfg_store
    build_round(store, 1, kept=1000)
    put(store, "synthesize", 2, {"data.jsonl": []}, counts={"kept": 0, "requests": 400, "received": 3,
                                                           "failures": 7})
    f = round_facts(cfg, store, 2)
    assert (f.verdict, f.no_new_rows, f.rule, f.evidence) == (None, True, (), ())
    assert (f.synthesis.budget_stopped, f.synthesis.requests, f.synthesis.received,
            f.synthesis.failures) == (False, 400, 3, 7)
    assert f.synthesis.asked == 2000  # no ``requested`` count: the config's target for round 2


def test_facts_of_a_first_round_whose_every_request_the_cap_refused(cfg_store):
    """Issue 19: round 1 kept 0 because the cap refused every request: it stops before training, like a later
    round that kept 0 (a round 1 that sent requests and kept 0 still trains on the coverage data)."""
    cfg, store = cfg_store
    build_baseline(store)
    put(store, "synthesize", 1, {"data.jsonl": []}, counts={"kept": 0, "requests": 0, "received": 0,
                                                           "failures": 0}, extra={"stopped": "budget"})
    f = round_facts(cfg, store, 1)
    assert (f.verdict, f.no_new_rows, f.spend_usd) == (None, True, 0.0)
    assert (f.synthesis.budget_stopped, f.synthesis.requests, f.synthesis.refused_all) == (
        True, 0, True)
    put(store, "synthesize", 1, {"data.jsonl": []}, counts={"kept": 0, "requests": 3}, extra={"stopped": "budget"})
    assert not no_new_rows(store, 1)  # three were sent: round 1 trains on the coverage data
