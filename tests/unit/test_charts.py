"""charts: one colour and order per metric, whole-number histogram counts with the mean marked, rule lines only for
metrics the rule names, category bars with n, CI whiskers and pale small categories, a trend with the baseline band
(issue 12). Figures are inspected through ``path=None`` (the unsaved figure) and as PNG pixels."""

import matplotlib.colors as mcolors
import pytest
from PIL import Image

from pipeline.report import charts


def pixels_of(path, hex_color: str) -> int:
    """How many pixels of the PNG have exactly this colour."""
    want = tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    image = Image.open(path).convert("RGB")
    return sum(count for count, rgb in image.getcolors(image.width * image.height) if rgb == want)


def close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)


def vertical_lines(ax) -> list[tuple[float, str, str]]:
    """(x, linestyle, colour) of the axvlines of a panel."""
    out = []
    for line in ax.get_lines():
        xs = line.get_xdata()
        if len(xs) == 2 and xs[0] == xs[1]:
            out.append((float(xs[0]), line.get_linestyle(), mcolors.to_hex(line.get_color())))
    return out


def test_every_metric_keeps_its_colour_order_and_full_range():
    assert charts.color("rougeL") == charts.METRICS["rougeL"] != charts.color("similarity")
    assert charts.color("my_metric") == charts.color("my_metric")  # an unknown metric still gets a stable colour
    # one order for every chart, whatever order the metrics come in
    assert charts.ordered(["embedding", "zeta", "rougeL", "similarity", "alpha"]) == \
        ["similarity", "rougeL", "embedding", "alpha", "zeta"]
    assert charts.scale("rougeL", [0.2, 0.25]) == (0.0, 1.0)  # never zoomed to the data
    assert charts.scale("similarity", [60, 71.2]) == (0.0, 100.0)
    assert charts.scale("embedding", [-0.1, 0.5]) == (-0.1, 1.0)  # widened only to fit a value outside it
    assert charts.scale("other", [3.0]) == (0.0, 100.0) and charts.scale("other", [0.3]) == (0.0, 1.0)


def test_panels_come_in_the_same_order_in_every_chart():
    scores = {"embedding": [0.5, 0.6], "similarity": [70, 80]}
    by_cat = {"a": {"embedding": {"mean": 0.5, "n": 6}, "similarity": {"mean": 70, "n": 6}}}
    points = [{"label": "r1", "x": 1, "verdict": "fail", "stats": {"embedding": {"mean": 0.5},
                                                                    "similarity": {"mean": 70}}}]
    figs = [charts.score_histogram(scores, None), charts.category_means(by_cat, ["embedding", "similarity"], None),
            charts.round_trend(points, ["embedding", "similarity"], None)]
    for fig in figs:
        assert [ax.get_title().split()[0].rstrip(":") for ax in fig.axes] == ["similarity", "embedding"]
        assert not any("this round" in ax.get_title() for ax in fig.axes)  # true of round 0 as well
        close(fig)


def test_histogram_bars_do_not_vanish_when_all_scores_are_equal(tmp_path):
    path = charts.score_histogram({"rougeL": [0.25] * 6}, tmp_path / "h.png")
    assert pixels_of(path, charts.METRICS["rougeL"]) > 300  # one bin of width 0.05 holds all six answers
    path = charts.score_histogram({"similarity": [100.0] * 3}, tmp_path / "top.png")  # on the range's top edge
    assert pixels_of(path, charts.METRICS["similarity"]) > 100


def test_histogram_counts_whole_answers_and_marks_the_mean():
    fig = charts.score_histogram({"similarity": [70, 80, 90]}, None, means={"similarity": 80.0})
    ax = fig.axes[0]
    ticks = [t for t in ax.get_yticks() if 0 <= t <= ax.get_ylim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)  # no half answers
    assert (80.0, "-", charts.MEAN_COLOR) in vertical_lines(ax)
    assert any("mean 80" in t.get_text() for t in ax.texts)
    close(fig)


def test_rule_lines_only_for_metrics_in_the_rule():
    rule = {"similarity": {"mean": 90.0}, "rougeL": {"pass_rate": True}}
    thresholds = {"similarity": 80.0, "rougeL": 0.3, "embedding": 0.8}
    fig = charts.score_histogram({"similarity": [70, 95], "rougeL": [0.2, 0.4], "embedding": [0.5, 0.9]}, None,
                                 rule=rule, thresholds=thresholds)
    lines = {ax.get_title().split(":")[0]: vertical_lines(ax) for ax in fig.axes}
    assert (90.0, "--", "#000000") in lines["similarity"]  # the bound on the mean, not the per-answer threshold
    assert not any(x == 80.0 for x, _, _ in lines["similarity"])
    assert (0.3, ":", "#000000") in lines["rougeL"]  # a pass-rate rule counts answers above the threshold
    assert [style for _, style, _ in lines["embedding"]] == ["-"]  # only its mean: the rule does not name it
    close(fig)


def test_histogram_draws_the_base_outline(tmp_path):
    path = charts.score_histogram({"similarity": [70, 80]}, tmp_path / "h.png", base={"similarity": [40, 50]})
    assert pixels_of(path, charts.METRICS["similarity"]) > 100 and pixels_of(path, charts.BASE_COLOR) > 100


def test_nothing_to_draw_returns_none(tmp_path):
    assert charts.score_histogram({"rougeL": [None]}, tmp_path / "h.png") is None
    assert charts.category_means({}, ["rougeL"], tmp_path / "c.png") is None
    assert charts.round_trend([], ["rougeL"], tmp_path / "t.png") is None
    assert not list(tmp_path.iterdir())


def test_categories_show_n_ci_whiskers_and_pale_small_ones():
    by_cat = {"big": {"rougeL": {"mean": 0.3, "ci_low": 0.25, "ci_high": 0.35, "n": 12}},
              "tiny": {"rougeL": {"mean": 0.4, "ci_low": 0.1, "ci_high": 0.7, "n": 2}}}
    fig = charts.category_means(by_cat, ["rougeL"], None)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["big\nn=12", "tiny\nn=2"]
    bars = [p for p in ax.patches if p.get_height() > 0]
    assert [round(b.get_height(), 3) for b in bars] == [0.3, 0.4]
    assert bars[0].get_alpha() in (None, 1.0) and bars[1].get_alpha() < 0.5  # fewer than 5 prompts: pale
    whiskers = [c for c in ax.collections if c.get_segments()]
    spans = sorted(round(float(seg[1][1] - seg[0][1]), 3) for c in whiskers for seg in c.get_segments()
                   if seg[0][0] == seg[1][0])
    assert spans == [0.1, 0.6]  # the CI of each category
    close(fig)


@pytest.mark.parametrize("base", [None, {"a": {"rougeL": {"mean": 0.1, "n": 6}}, "b": {"rougeL": {"mean": 0.2,
                                                                                             "n": 6}}}])
def test_category_means_with_and_without_the_base(tmp_path, base):
    by_cat = {"a": {"rougeL": {"mean": 0.3, "n": 6}}, "b": {"rougeL": {"mean": 0.4, "n": 6}}}
    path = charts.category_means(by_cat, ["rougeL"], tmp_path / "c.png", base=base)
    assert pixels_of(path, charts.METRICS["rougeL"]) > 100
    assert (pixels_of(path, charts.BASE_COLOR) > 100) == (base is not None)  # not just anti-aliased text


def test_trend_shows_the_base_band_ci_bars_and_is_reproducible(tmp_path):
    points = [{"label": "r1", "x": 1090, "verdict": "pass",
               "stats": {"rougeL": {"mean": 0.21, "ci_low": 0.18, "ci_high": 0.24}}},
              {"label": "base", "x": 0, "verdict": "fail",
               "stats": {"rougeL": {"mean": 0.17, "ci_low": 0.15, "ci_high": 0.19}}}]
    first = charts.round_trend(points, ["rougeL"], tmp_path / "a.png", x_label="training rows",
                               targets={"rougeL": 0.3})
    again = charts.round_trend(points, ["rougeL"], tmp_path / "b.png", x_label="training rows",
                               targets={"rougeL": 0.3})
    assert first.read_bytes() == again.read_bytes()  # no timestamps: a rerun writes the same bytes
    assert pixels_of(first, charts.BASE_COLOR) > 20 and pixels_of(first, charts.METRICS["rougeL"]) > 20
    ax = charts.round_trend(points, ["rougeL"], None, targets={"rougeL": 0.3}).axes[0]
    band = [p for p in ax.patches if p.get_height() > 0]  # axhspan: the base's CI across the panel
    assert [(round(p.get_y(), 3), round(p.get_y() + p.get_height(), 3)) for p in band] == [(0.15, 0.19)]
    horizontal = {round(float(line.get_ydata()[0]), 3): line.get_linestyle() for line in ax.get_lines()
                  if len(line.get_ydata()) == 2 and line.get_ydata()[0] == line.get_ydata()[1]}
    assert horizontal == {0.17: "-", 0.3: "--"}  # the base's mean; the pass rule's bound
    close(ax.figure)


# Issue 20, part 7: axes zoomed to the data, a label on every y axis, the CI level on every chart with a CI, mean and
# base labels apart.
TREND = [{"label": "base", "x": 0, "verdict": "fail",
          "stats": {"rougeL": {"mean": 0.208, "ci_low": 0.165, "ci_high": 0.259},
                    "bleu": {"mean": 8.07, "ci_low": 4.6, "ci_high": 12.6}}},
         {"label": "r1", "x": 130, "verdict": "pass",
          "stats": {"rougeL": {"mean": 0.265, "ci_low": 0.213, "ci_high": 0.323},
                    "bleu": {"mean": 10.0, "ci_low": 5.9, "ci_high": 14.9}}}]
CATEGORIES = {"a": {"bleu": {"mean": 8.5, "ci_low": 4.0, "ci_high": 13.0, "n": 12}},
              "b": {"bleu": {"mean": 13.0, "ci_low": 7.0, "ci_high": 19.0, "n": 20}}}


def test_zoom_fits_the_data_with_a_margin_inside_the_metric_range():
    assert charts.figures.zoom("rougeL", [0.2, 0.3]) == pytest.approx((0.192, 0.308))
    assert charts.figures.zoom("rougeL", [0.01, 0.3]) == pytest.approx((0.0, 0.3232))  # not below the range
    # a bar starts at 0
    assert charts.figures.zoom("bleu", [4.0, 19.0], zero=True) == pytest.approx((0.0, 20.52))
    assert charts.figures.zoom("rougeL", [0.25]) == pytest.approx((0.221, 0.279))  # one value: centred


def test_histogram_zooms_and_folds_a_thin_tail_into_a_hatched_last_bar():
    bleu = [1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0, 15.0, 18.0, 20.0, 22.0, 25.0, 3.5,
            4.5, 98.0]
    fig = charts.score_histogram({"bleu": bleu}, None)
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert lo == 0 and 20 < hi < 40  # not 0-100: the answers below 25 spread over the bars
    bars = [p for p in ax.patches if p.get_height() > 0]
    assert len(bars) >= 8 and sum(p.get_height() for p in ax.patches) == len(bleu)  # the 98 is still counted
    assert ax.patches[-1].get_hatch() == "///" and "last bar: 1 above" in ax.get_xlabel()
    close(fig)
    fig = charts.score_histogram({"rougeL": [0.2, 0.22, 0.25, 0.3, 0.31]}, None)
    assert fig.axes[0].get_xlim()[1] <= 0.35 and "last bar" not in fig.axes[0].get_xlabel()
    close(fig)


def test_trend_and_categories_zoom_but_keep_the_base_band_and_bars_from_zero():
    ax = charts.round_trend(TREND, ["rougeL"], None, targets={"rougeL": 0.3}).axes[0]
    lo, hi = ax.get_ylim()
    assert 0.1 < lo < 0.165 and 0.323 < hi < 0.4  # every CI end, the base's band and the bound, no 0-1
    close(ax.figure)
    ax = charts.category_means(CATEGORIES, ["bleu"], None).axes[0]
    lo, hi = ax.get_ylim()
    assert lo == 0 and 19 < hi < 25
    close(ax.figure)


def test_every_panel_has_a_y_label_and_every_ci_states_its_level():
    figs = {"histogram": charts.score_histogram({"rougeL": [0.2, 0.3], "bleu": [5.0, 9.0]}, None),
            "categories": charts.category_means(CATEGORIES, ["bleu"], None, confidence=0.9),
            "trend": charts.round_trend(TREND, ["rougeL", "bleu"], None, confidence=0.9)}
    labels = {name: [ax.get_ylabel() for ax in fig.axes] for name, fig in figs.items()}
    assert labels == {"histogram": ["answers", "answers"], "categories": ["mean bleu"],
                      "trend": ["mean rougeL", "mean bleu"]}
    for name in ("categories", "trend"):
        legend = [t.get_text() for t in figs[name].legends[0].get_texts()]
        assert any(t.startswith("90% CI of") for t in legend), name
    for fig in figs.values():
        close(fig)


@pytest.mark.parametrize("mean, base", [(0.265, 0.208), (0.208, 0.265)])
def test_mean_and_base_labels_face_away_from_each_other(mean, base):
    fig = charts.score_histogram({"rougeL": [0.0, 0.1, 0.2, 0.3, 0.5, 0.7]}, None,
                                 base={"rougeL": [0.0, 0.6]}, means={"rougeL": mean},
                                 base_means={"rougeL": base})
    labels = {t.get_text().split()[0]: t for t in fig.axes[0].texts}
    sides = {word: t.get_horizontalalignment() for word, t in labels.items()}
    assert sides == ({"mean": "left", "base": "right"} if mean > base else {"mean": "right", "base": "left"})
    assert labels["mean"].xyann[1] != labels["base"].xyann[1]  # and at two heights
    close(fig)
