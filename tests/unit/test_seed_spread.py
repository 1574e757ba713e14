"""``stats.seeds``: the spread between training seeds (issue #20, part 6), by hand-made score rows."""

from __future__ import annotations

import pytest

from pipeline.stats.seeds import beside_change, seed_spread, seeds_of


def row(prompt: str, seed: int | None, **scores) -> dict:
    return {"id": prompt, **({} if seed is None else {"seed": seed}), "scores": scores}


def test_no_spread_without_two_seeds():
    assert seed_spread([row("a", None, rougeL=0.5), row("b", None, rougeL=0.7)], ["rougeL"]) == {}
    assert seed_spread([row("a", 7, rougeL=0.5), row("b", 7, rougeL=0.7)], ["rougeL"]) == {}


def test_each_seed_averages_its_answers_per_prompt_first_over_the_prompts_all_seeds_scored():
    rows = [
        row("a", 42, rougeL=0.2), row("a", 42, rougeL=0.4),  # two samples of one prompt: 0.3
        row("b", 42, rougeL=0.5),
        row("c", 42, rougeL=0.9),  # seed 7 has no score for c: left out of both means
        row("a", 7, rougeL=0.1),
        row("b", 7, rougeL=0.3),
        row("c", 7, rougeL=None),
    ]
    found = seed_spread(rows, ["rougeL", "bleu"])
    assert list(found) == ["rougeL"]  # no seed scored bleu
    s = found["rougeL"]
    assert s["per_seed"] == {"42": pytest.approx(0.4), "7": pytest.approx(0.2)}
    assert list(s["per_seed"]) == ["42", "7"]  # the order the seeds come in, the first seed first
    assert s["spread"] == pytest.approx(0.2) and s["n"] == 2
    assert s["sd"] == pytest.approx(0.2 / 2 ** 0.5, abs=1e-6)  # rounded to 6 places, as metrics.json is
    assert seeds_of(rows) == [42, 7]


def test_the_change_beside_the_spread():
    spread = seed_spread([row("a", 1, bleu=10.0, rougeL=0.3), row("a", 2, bleu=14.0, rougeL=0.32),
                          row("b", 1, bleu=20.0, rougeL=0.4), row("b", 2, bleu=24.0, rougeL=0.38)],
                         ["bleu", "rougeL"])
    diffs = {"bleu": {"diff": 3.0, "ci_low": -1.0, "ci_high": 7.0, "change": "no clear change"},
             "rougeL": {"diff": -0.1, "ci_low": -0.15, "ci_high": -0.05, "change": "worse"}}
    rows = beside_change(spread, diffs)
    assert [(r["metric"], r["spread"], r["within_noise"]) for r in rows] == [
        ("bleu", pytest.approx(4.0), True), ("rougeL", pytest.approx(0.0), False)]
    assert rows[1]["diff"]["change"] == "worse" and rows[0]["per_seed"] == {"1": 15.0, "2": 19.0}
    assert beside_change(spread, {})[0]["within_noise"] is None  # nothing to compare with
