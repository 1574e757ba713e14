"""Reviewers' labels (issue 22, item 2): ``/duo label`` lines, the review block's boxes, and agreement figures
computed by hand (accuracy and Cohen's κ)."""

import pytest

from pipeline.artifacts.feedback import latest
from pipeline.feedback.commands import parse_commands
from pipeline.feedback.review import END, START, boxes, review_samples
from pipeline.stats.agreement import agreement, cohen_kappa


def test_commands_one_per_line_with_errors_named():
    text = ("Thanks!\n/duo label t3 bad the date is wrong\n> /duo label `t4` GOOD\n"
            "/duo label t5\n/duo label t6 so-so\nnot /duo label t7 bad")
    got = parse_commands(text)
    assert got[0] == ({"id": "t3", "label": "bad", "reason": "the date is wrong"}, None)
    assert got[1] == ({"id": "t4", "label": "good", "reason": None}, None)
    assert got[2][0] is None and "expected '/duo label ID good|bad [reason]'" in got[2][1]
    assert got[3] == (None, "'/duo label t6 so-so': label 'so-so' is not good or bad")
    assert len(got) == 4  # a command must start its line


def test_only_boxes_inside_the_block_count():
    body = (f"- [x] acceptable `t0`\n{START}\n- [x] acceptable `t1`: x\n- [ ] acceptable `t2`\n"
            f"* [X] acceptable `t3`\n{END}\n- [x] acceptable `t9`")
    assert boxes(body) == {"t1": True, "t2": False, "t3": True}
    assert boxes(body.replace(END, "")) == {"t1": True, "t2": False, "t3": True, "t9": True}  # end cut off
    assert boxes("no block") == {}


def test_review_samples_worst_then_seeded_random():
    rows = [{"id": f"r{i}", "instruction": "q " * 100, "answer": "a", "scores": {"sim": 100 - i}} for i in range(12)]
    first = review_samples(rows, "sim", 3, 4, "demo:1", {"r11": {"label": "good"}})
    assert [w["id"] for w in first["worst"]] == ["r11", "r10", "r9"] and first["worst"][0]["checked"]
    assert len(first["random"]) == 4 and not {w["id"] for w in first["random"]} & {"r11", "r10", "r9"}
    assert review_samples(rows, "sim", 3, 4, "demo:1")["random"] == first["random"]  # same seed, same sample
    assert len(first["worst"][0]["prompt"]) <= 120 and first["worst"][0]["prompt"].endswith("…")
    assert review_samples([], "sim", 3, 4, "x") is None


def test_latest_label_wins():
    rows = [{"id": "a", "label": "good", "when": "2026-01-02T00:00:00Z"},
            {"id": "a", "label": "bad", "when": "2026-01-01T00:00:00Z"},
            {"id": "b", "label": "good", "when": "2026-01-01T00:00:00Z"},
            {"id": "b", "label": "bad", "when": "2026-01-01T00:00:00Z"}]
    assert {k: v["label"] for k, v in latest(rows).items()} == {"a": "good", "b": "bad"}


def test_agreement_hand_computed_and_flagged():
    # 10 answers: both good 3, people good / judge not 2, judge good / people not 3, both bad 2.
    people = [True] * 5 + [False] * 5
    judge = [True, True, True, False, False, True, True, True, False, False]
    # p_o = 5/10; p_people = 0.5, p_judge = 0.6; p_e = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = (0.5-0.5)/0.5 = 0
    a = agreement(people, judge, samples=2000, confidence=0.95)
    assert (a["n"], a["accuracy"], a["both_good"], a["people_only"], a["judge_only"], a["both_bad"]) == \
        (10, 0.5, 3, 2, 3, 2)
    assert a["kappa"] == pytest.approx(0.0)
    assert a["accuracy_ci_low"] < 0.5 < a["accuracy_ci_high"] and a["kappa_ci_low"] < 0 < a["kappa_ci_high"]
    assert a["flagged"]  # n >= 5 and kappa < 0.4
    # the 4-answer case of the integration test: accuracy 0.5, kappa 0.2, too few to flag
    small = agreement([True, True, False, True], [True, False, False, False], samples=2000)
    assert small["accuracy"] == 0.5 and small["kappa"] == pytest.approx(0.2) and not small["flagged"]
    # perfect agreement: kappa 1, not flagged; one class on both sides: kappa undefined, accuracy decides
    assert cohen_kappa([True, False] * 3, [True, False] * 3) == pytest.approx(1.0)
    same = agreement([True] * 6, [True] * 6, samples=500)
    assert same["kappa"] is None and same["accuracy"] == 1.0 and not same["flagged"]
