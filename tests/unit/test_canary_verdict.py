"""The canary's verdict rules (pipeline.rollout.verdict) on evidence built with the real statistics: the next step of
the ramp, a CI that still straddles -max_loss holds with the prompts it needs, a student that errs too often is
rolled back, and a mixed student is called by the paired difference's CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.rollout.verdict import decide, more_prompts, next_step
from pipeline.stats.paired import change_word, paired_diff

CONFIG = ("task: {name: bot}\ndata: {source: d.jsonl}\nstudent: {model: tiny}\n"
          "rollout: {min_prompts: 20, max_loss: 0.05, steps: [0.05, 0.25, 1.0]}\n")


@pytest.fixture
def cfg(tmp_path: Path):
    (tmp_path / "duo.yaml").write_text(CONFIG)
    return load_config(tmp_path / "duo.yaml")


def evidence(wins: list[float]) -> dict:
    a = {f"p{i}": w for i, w in enumerate(wins)}
    d = paired_diff(a, {k: 0.5 for k in a}, samples=2000)
    return {"prompts": len(wins), "decision_metric": "win_rate", "diff": d, "change": change_word(d),
            "judge": {"mean": sum(wins) / len(wins), "ci_low": None, "ci_high": None}, "metrics": {}}


OPS = {"student": {"requests": 100, "errors": 0, "error_rate": 0.0}}


def test_next_step_walks_the_steps_and_stays_at_the_last():
    assert [next_step([0.05, 0.25, 1.0], w) for w in (0.0, 0.05, 0.1, 0.25, 1.0)] == [0.05, 0.25, 0.25, 1.0, 1.0]


def test_a_mixed_student_behind_the_service_is_rolled_back(cfg):
    v = decide(cfg, evidence([0.5] * 28 + [0.0] * 12), OPS, 0.25)  # 12 of 40 lost, none won: win rate 0.35
    assert v["verdict"] == "rollback" and v["next_weight"] == 0.0 and "win_rate 0.350" in v["reason"]


def test_a_ci_straddling_the_margin_holds_with_the_prompts_it_needs(cfg):
    wins = [0.5] * 14 + [0.0, 1.0] * 3  # 20 prompts, mean 0.5, sd of the differences 0.32
    v = decide(cfg, evidence(wins), OPS, 0.05)
    assert v["verdict"] == "hold" and v["next_weight"] == 0.05
    assert "still reaches below -0.05" in v["reason"] and v["more_prompts"] > 100
    d = evidence(wins)["diff"]
    # with the CI of that many prompts (same spread) the lower bound clears -max_loss: 1.96 * sd / sqrt(n) <= 0.05
    n = 20 + v["more_prompts"]
    assert 1.96 * d["sd"] / n ** 0.5 <= 0.05 < 1.96 * d["sd"] / (n - 2) ** 0.5
    assert more_prompts(d, 20, 20, 0.05, 0.95) == v["more_prompts"]


def test_a_student_that_errs_too_often_is_rolled_back_whatever_its_answers(cfg):
    ops = {"student": {"requests": 40, "errors": 4, "error_rate": 0.1}}
    v = decide(cfg, evidence([0.5] * 40), ops, 0.25)
    assert v["verdict"] == "rollback" and "failed 4 of its 40 requests (10.0%" in v["reason"]


def test_as_good_as_the_service_ramps(cfg):
    v = decide(cfg, evidence([0.5] * 25), OPS, 0.25)
    assert (v["verdict"], v["next_weight"]) == ("ramp", 1.0) and "next weight 100%" in v["reason"]
