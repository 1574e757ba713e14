"""forest: the paired differences that decide a round, drawn (issue 20, part 7): one panel per metric, one
row per comparison (base, previous round, the service's own second answer), a point and its CI whisker
coloured by the change word, a zero line, the pass rule's bound on the row it applies to, axes zoomed to
the data, the CI level stated; nothing for round 0 or a round with no comparison; wired into ``duo report``.
"""

import copy

import matplotlib.colors as mcolors
import pytest

from pipeline.report import forest
from pipeline.stages import report
from pipeline.store import open_store
from tests.round_artifacts import build_baseline, build_prepare, build_round, make_config


def diff(d, lo, hi, change):
    return {"diff": d, "ci_low": lo, "ci_high": hi, "n": 50, "sd": 0.13, "change": change}


ROUND_1 = {"rougeL": diff(0.057, 0.024, 0.097, "better"),
           "bleu": diff(1.94, -0.24, 4.38, "no detectable change"),
           "embedding": diff(0.092, 0.035, 0.149, "better")}


def round_1() -> dict:
    """The example's round 1 (50 prompts): its previous round is the base, so both comparisons agree."""
    return {"round": 1, "baseline_round": 0, "previous_round": 0,
            "metrics": {"rougeL": {"mean": 0.265}, "bleu": {"mean": 10.0}, "embedding": {"mean": 0.596}},
            "vs_baseline": copy.deepcopy(ROUND_1), "vs_previous": copy.deepcopy(ROUND_1),
            "rule": [{"metric": "rougeL", "stat": "ci_low", "vs": "baseline", "min": 0.0, "above": None,
                      "value": 0.024, "ok": True}]}


def round_2() -> dict:
    """A regression: above the base, below round 1, far below the service's own second answer."""
    return {"round": 2, "baseline_round": 0, "previous_round": 1,
            "metrics": {"rougeL": {"mean": 0.239}, "bleu": {"mean": 9.1}, "embedding": {"mean": 0.57}},
            "vs_baseline": {"rougeL": diff(0.032, 0.001, 0.066, "better"),
                            "bleu": diff(1.05, -1.3, 3.4, "no detectable change"),
                            "embedding": diff(0.066, 0.01, 0.12, "better")},
            "vs_previous": {"rougeL": diff(-0.026, -0.056, -0.001, "worse"),
                            "bleu": diff(-0.9, -2.6, 0.8, "no detectable change"),
                            "embedding": diff(-0.026, -0.06, 0.008, "borderline")},
            "vs_service": {"rougeL": diff(-0.19, -0.23, -0.15, "worse")},
            "rule": [{"metric": "rougeL", "stat": "ci_low", "vs": "service", "min": -0.03, "above": None,
                      "value": -0.23, "ok": False},
                     # a condition on the mean: no comparison, no line
                     {"metric": "rougeL", "stat": "mean", "vs": None, "min": 0.3, "above": None,
                      "value": 0.239, "ok": False}]}


def close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)


def panels(fig) -> dict:
    return {ax.get_title(loc="left").split()[0]: ax for ax in fig.axes}


def vertical_lines(ax) -> list[tuple[float, str, tuple[float, float]]]:
    """(x, linestyle, (y0, y1)) of each vertical line of a panel: y in data units, but the zero line's
    in axes fractions (it spans the panel)."""
    out = []
    for line in ax.get_lines():
        xs, ys = line.get_xdata(), line.get_ydata()
        if len(xs) == 2 and xs[0] == xs[1]:
            out.append((round(float(xs[0]), 6), line.get_linestyle(), (float(ys[0]), float(ys[1]))))
    return out


def points(ax) -> list[tuple[float, float, str]]:
    """(x, y, marker colour) of each errorbar's point."""
    return [(float(c.lines[0].get_xdata()[0]), float(c.lines[0].get_ydata()[0]),
             mcolors.to_hex(c.lines[0].get_color())) for c in ax.containers]


def test_the_forest_chart_is_a_png(tmp_path):
    path = forest.forest_chart(round_2(), tmp_path / "f.png", confidence=0.95)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


NO_CI = {"rougeL": {"diff": 0.1, "ci_low": None, "ci_high": None}}


@pytest.mark.parametrize("change", [{"round": 0}, {"vs_baseline": {}, "vs_previous": {}},
                                    {"vs_baseline": NO_CI, "vs_previous": None}])
def test_nothing_to_draw_for_round_0_or_a_round_without_comparisons(tmp_path, change):
    ev = {**round_2(), "vs_service": {}, **change}
    assert forest.forest_chart(ev, tmp_path / "f.png", confidence=0.95) is None
    assert not list(tmp_path.iterdir())
    assert forest.forest_chart({"round": 3}, None, confidence=0.95) is None  # a sparse metrics.json


def test_each_comparison_is_a_row_with_its_whisker_zero_line_and_rule_bound():
    fig = forest.forest_chart(round_2(), None, confidence=0.95)
    axes = panels(fig)
    assert list(axes) == ["rougeL", "bleu", "embedding"]  # the charts' one metric order
    ax = axes["rougeL"]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "vs untuned base\n(round 0)", "vs previous\n(round 1)", "vs the service's own\nsecond answer"]
    assert len(ax.containers) == 3  # one point and whisker per comparison
    assert [(x, y) for x, y, _ in points(ax)] == [(0.032, 0), (-0.026, 1), (-0.19, 2)]
    whisker = ax.containers[2].lines[2][0].get_segments()[0]  # the service row's CI
    assert [round(float(x), 3) for x in whisker[:, 0]] == [-0.23, -0.15]
    lines = vertical_lines(ax)
    assert (0.0, "-", (0.0, 1.0)) in lines  # zero, across the panel
    assert (-0.03, "--", (1.6, 2.4)) in lines  # the rule's bound, on the service row only
    assert len(lines) == 2  # the rule's condition on the mean is no comparison: no line for it
    lo, hi = ax.get_xlim()
    assert lo < -0.23 and hi > 0.066 and hi - lo < 0.5  # zoomed to the data, 0 and the bound included
    assert vertical_lines(axes["bleu"]) == [(0.0, "-", (0.0, 1.0))]  # no rule names bleu
    assert axes["bleu"].get_xlim()[1] < 10  # bleu's differences, not its 0-100 scale
    assert len(axes["bleu"].get_yticklabels()) == 3  # the same rows in every panel
    assert "not compared" in [t.get_text() for t in axes["bleu"].texts]  # no vs_service for bleu
    close(fig)


def test_colour_follows_the_change_and_the_numbers_and_rule_are_written():
    fig = forest.forest_chart(round_2(), None, confidence=0.95)
    axes = panels(fig)
    colours = [c for _, _, c in points(axes["rougeL"])] + [points(axes["embedding"])[1][2]]
    assert colours == [forest.CHANGES[w][0] for w in ("better", "worse", "worse", "borderline")]
    texts = [t.get_text() for t in axes["rougeL"].texts]
    assert "-0.19 [-0.23, -0.15]\nworse" in texts
    assert "rule: CI low ≥ -0.03 NOT met" in texts
    close(fig)


@pytest.mark.parametrize("confidence, said", [(0.95, "95% CI"), (0.9, "90% CI")])
def test_the_ci_level_is_on_the_chart(confidence, said):
    fig = forest.forest_chart(round_2(), None, confidence=confidence)
    assert said in fig._suptitle.get_text()
    assert f"whisker: {said}" in [t.get_text() for t in fig.legends[0].get_texts()]
    close(fig)


def test_round_1_draws_the_base_and_the_previous_round_as_one_row():
    ev = round_1()
    ev["rule"].append({"metric": "rougeL", "stat": "ci_high", "vs": "previous", "min": 0.0, "above": None,
                       "value": 0.097, "ok": True})
    fig = forest.forest_chart(ev, None, confidence=0.95)
    ax = panels(fig)["rougeL"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["vs untuned base\n= previous (round 0)"]
    assert len(ax.containers) == 1
    assert [x for x, style, _ in vertical_lines(ax) if style == "--"] == [0.0, 0.0]  # both rows' bounds
    rules = "rule vs baseline: CI low ≥ 0 met\nrule vs previous: CI high ≥ 0 met"
    assert rules in [t.get_text() for t in ax.texts]
    lo, hi = ax.get_xlim()
    assert lo < 0 and 0.097 < hi < 0.2  # a difference of 0.03 to 0.1 fills the panel
    close(fig)


def test_report_draws_the_forest_from_round_1_on_and_embeds_it(tmp_path):
    cfg = make_config(tmp_path)
    store = open_store(cfg)
    build_prepare(store, train=90, test=4)
    build_baseline(store)
    build_round(store, 1, sim=60, prec=70)
    report.run(cfg, store, 0)
    report.run(cfg, store, 1)
    reports = cfg.resolve("reports") / "demo"
    assert not (reports / "round-0" / "paired_differences.png").exists()
    assert "paired_differences.png" not in (reports / "round-0" / "report.md").read_text()
    assert (reports / "round-1" / "paired_differences.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (reports / "round-1" / "report.md").read_text()
    assert "![Paired differences per metric with their 95% CIs](paired_differences.png)" in text
    assert text.index("paired_differences.png") < text.index("score_distribution.png")
