"""The best round so far (issue 20): ``pipeline.stats.best.walk`` on hand-made per-prompt means, then
the same rule read from hand-built stores (``standings``) and the adapter it picks (``adapter_round``).

The rule: the first evaluated round is the best; a later round replaces the best only when its mean on
the decision metric is higher AND its paired difference with the best (over the prompts both scored) is
not significantly worse.
"""

from __future__ import annotations

import pytest

from pipeline.stats.best import Scored, adapter_round, standings, walk
from pipeline.store import open_store
from tests.round_artifacts import build_baseline, build_prepare, build_round, make_config

OPTS = {"samples": 1000, "confidence": 0.95}
PROMPTS = [f"p{i}" for i in range(20)]


def scored(round_no: int, shift: float, *, prompts=PROMPTS, mean: float | None = None) -> Scored:
    """Round ``round_no`` whose per-prompt means are 0.3 + shift, spread a little (+-0.01) around it."""
    per_prompt = {p: 0.3 + shift + (0.01 if i % 2 else -0.01) for i, p in enumerate(prompts)}
    return Scored(round_no, sum(per_prompt.values()) / len(per_prompt) if mean is None else mean, per_prompt)


def test_the_first_evaluated_round_is_the_best():
    found = walk([scored(1, 0.0)], "rougeL", **OPTS)
    assert (found[1].best, found[1].before, found[1].vs_before, found[1].regressed) == (1, None, None, False)


def test_a_higher_round_not_significantly_worse_replaces_the_best():
    found = walk([scored(1, 0.0), scored(2, 0.02)], "rougeL", **OPTS)
    assert (found[2].best, found[2].before) == (2, 1)
    assert found[2].vs_before["diff"] == pytest.approx(0.02) and found[2].vs_before["change"] == "better"
    # a higher mean with no detectable change replaces it too
    flat = walk([scored(1, 0.0), Scored(2, 0.31, scored(1, 0.0).per_prompt)], "rougeL", **OPTS)
    assert flat[2].best == 2 and flat[2].vs_before["change"] == "no detectable change"


def test_a_lower_round_does_not_replace_the_best_and_a_significantly_worse_one_regressed():
    found = walk([scored(1, 0.0), scored(2, -0.03), scored(3, -0.001)], "rougeL", **OPTS)
    assert (found[2].best, found[2].before) == (1, 1)
    assert (found[2].vs_before["change"], found[2].regressed) == ("worse", True)
    # round 3 is compared with the best (round 1), not with round 2 before it
    assert (found[3].best, found[3].before) == (1, 1)
    assert found[3].vs_before["diff"] == pytest.approx(-0.001)


def test_a_higher_mean_that_is_significantly_worse_on_the_shared_prompts_does_not_replace():
    # round 2 scored more prompts, and its mean is higher, but on the 20 prompts both scored it is worse
    more = {**scored(2, -0.03).per_prompt, **{f"q{i}": 0.9 for i in range(20)}}
    found = walk([scored(1, 0.0), Scored(2, 0.6, more)], "rougeL", **OPTS)
    assert (found[2].best, found[2].vs_before["change"], found[2].regressed) == (1, "worse", True)


def test_the_walk_is_in_round_order_and_skips_rounds_without_a_mean():
    found = walk([scored(3, 0.05), Scored(2, None), scored(1, 0.0)], "rougeL", **OPTS)
    assert sorted(found) == [1, 3] and (found[3].best, found[3].before) == (3, 1)


# --------------------------------------------------------------------------- from the store


@pytest.fixture
def cfg_store(tmp_path):
    cfg = make_config(tmp_path)
    store = open_store(cfg)
    build_prepare(store)
    build_baseline(store)
    return cfg, store


def test_standings_and_adapter_from_the_store(cfg_store):
    cfg, store = cfg_store
    assert standings(cfg, store) == {}
    build_round(store, 1, sim=71.2)
    build_round(store, 2, sim=60.0, factor=0.8)  # every prompt lower: significantly worse than round 1
    found = standings(cfg, store)
    assert (found[2].metric, found[2].best, found[2].best_mean) == ("similarity", 1, 71.2)
    assert found[2].mean == 60.0
    assert found[2].regressed and found[2].vs_before["ci_high"] < 0
    assert adapter_round(cfg, store) == (
        1, None, "the best evaluated round on similarity, mean 71.2 (none promoted)")
    build_round(store, 3, sim=75.0, factor=1.05)  # higher than round 1 and not worse: the new best
    assert standings(cfg, store)[3].best == 3 and adapter_round(cfg, store)[0] == 3
    assert adapter_round(cfg, store, 2)[0] == 1  # the adapter after round 2: later rounds do not count
    assert standings(cfg, store, skip={3})[2].best == 1  # a round rejected in review is left out


def test_a_borderline_regression_like_the_issues_round_2_stops_under_every_bootstrap_seed():
    """Round 2 of the issue: -0.026 [-0.056, -0.001] vs round 1 over 50 prompts. Its upper CI end sits within
    Monte-Carlo error of 0, so its word is 'borderline' under some seeds and 'worse' under others; the loop
    must call it a regression under all of them (and not under a borderline gain)."""
    import numpy as np

    from pipeline.stats.decision_parts import is_regression
    from pipeline.stats.paired import change_word, paired_diff

    rng = np.random.default_rng(7)
    noise = rng.normal(0.0, 0.11, 50)
    noise -= noise.mean()
    base = {f"q{i}": 0.3 for i in range(50)}
    d0 = paired_diff({k: 0.3 + noise[i] for i, k in enumerate(base)}, base, samples=10000)
    shift = -0.001 - d0["ci_high"]  # moves the upper end to -0.001
    worse = {k: 0.3 + noise[i] + shift for i, k in enumerate(base)}
    words, regressions = set(), set()
    for seed in range(20):
        d = paired_diff(worse, base, samples=10000, seed=seed)
        d["change"] = change_word(d)
        words.add(d["change"])
        regressions.add(is_regression(d))
    assert words <= {"worse", "borderline"} and regressions == {True}
    better = {k: 0.6 - v for k, v in worse.items()}  # the mirror image: a borderline gain is no regression
    assert not any(is_regression({**paired_diff(better, base, samples=10000, seed=s), "change": "borderline"})
                   for s in range(3))
    found = walk([Scored(1, 0.3, base), Scored(2, sum(worse.values()) / 50, worse)], "rougeL",
                 samples=10000, confidence=0.95)
    assert found[2].regressed and found[2].best == 1
