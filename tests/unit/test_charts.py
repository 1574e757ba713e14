"""charts: fixed colours and ranges per metric, bars that survive equal scores, the base first in the trend."""

import pytest
from PIL import Image

from pipeline import charts


def pixels_of(path, hex_color: str) -> int:
    """How many pixels of the PNG have exactly this colour."""
    want = tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    image = Image.open(path).convert("RGB")
    return sum(count for count, rgb in image.getcolors(image.width * image.height) if rgb == want)


def test_every_metric_keeps_its_colour_and_full_range():
    assert charts.color("rougeL") == charts.COLORS["rougeL"] != charts.color("similarity")
    assert charts.color("my_metric") == charts.color("my_metric")  # an unknown metric still gets a stable colour
    assert charts.scale("rougeL", [0.2, 0.25]) == (0.0, 1.0)  # never zoomed to the data
    assert charts.scale("similarity", [60, 71.2]) == (0.0, 100.0)
    assert charts.scale("bleu", [12.5]) == (0.0, 100.0)
    assert charts.scale("embedding", [-0.1, 0.5]) == (-0.1, 1.0)  # widened only to fit a value outside it
    assert charts.scale("other", [3.0]) == (0.0, 100.0) and charts.scale("other", [0.3]) == (0.0, 1.0)


def test_histogram_bars_do_not_vanish_when_all_scores_are_equal(tmp_path):
    path = charts.score_histogram({"rougeL": [0.25] * 6}, {}, tmp_path / "h.png")
    assert pixels_of(path, charts.COLORS["rougeL"]) > 300  # one bin of width 0.05 holds all six answers


def test_histogram_draws_the_base_outline(tmp_path):
    path = charts.score_histogram({"similarity": [70, 80]}, {"similarity": 90}, tmp_path / "h.png",
                                  base={"similarity": [40, 50]})
    assert pixels_of(path, charts.COLORS["similarity"]) > 100 and pixels_of(path, charts.BASE_COLOR) > 100


def test_nothing_to_draw_returns_none(tmp_path):
    assert charts.score_histogram({"rougeL": [None]}, {}, tmp_path / "h.png") is None
    assert charts.category_means({}, ["rougeL"], tmp_path / "c.png") is None
    assert charts.round_trend([], ["rougeL"], tmp_path / "t.png") is None
    assert not list(tmp_path.iterdir())


def test_trend_shows_the_base_first_with_ci_bars_and_is_reproducible(tmp_path):
    points = [{"label": "r1", "x": 1090, "stats": {"rougeL": {"mean": 0.21, "ci_low": 0.18, "ci_high": 0.24}}},
              {"label": "base", "x": 0, "stats": {"rougeL": {"mean": 0.17, "ci_low": 0.15, "ci_high": 0.19}}}]
    first = charts.round_trend(points, ["rougeL"], tmp_path / "a.png", x_label="training rows",
                               targets={"rougeL": 0.3})
    again = charts.round_trend(points, ["rougeL"], tmp_path / "b.png", x_label="training rows",
                               targets={"rougeL": 0.3})
    assert first.read_bytes() == again.read_bytes()  # no timestamps: a rerun writes the same bytes
    assert pixels_of(first, charts.BASE_COLOR) > 20 and pixels_of(first, charts.COLORS["rougeL"]) > 20


@pytest.mark.parametrize("base", [None, {"a": {"rougeL": {"mean": 0.1}}, "b": {"rougeL": {"mean": 0.2}}}])
def test_category_means_with_and_without_the_base(tmp_path, base):
    by_cat = {"a": {"rougeL": {"mean": 0.3}}, "b": {"rougeL": {"mean": 0.4}}}
    path = charts.category_means(by_cat, ["rougeL"], tmp_path / "c.png", base=base)
    assert pixels_of(path, charts.COLORS["rougeL"]) > 100
    assert (pixels_of(path, charts.BASE_COLOR) > 100) == (base is not None)  # not just anti-aliased text
