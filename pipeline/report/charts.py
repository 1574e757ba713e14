"""PNG charts of one round's scores: the histogram of the per-answer scores and the category means.
The trend over rounds is in ``trend``, the paired differences in ``forest``; what they share (colours,
order, zoom, plumbing) in ``figures``.

Each function writes one file and returns its path (with ``path=None`` it returns the unsaved
matplotlib figure instead), or returns None when there is nothing to draw. Every panel is zoomed to
its data (a bar still starts at 0), so a change of a few hundredths is visible; the panels come in
``METRICS``' order, in the metric's colour, and the untuned base (round 0) is always grey. A line is
drawn for the pass rule only where the rule names the metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import figures
from .figures import BASE_COLOR, MEAN_COLOR, METRICS, RULE_COLOR, SCALES, SINGLE, color, ordered, scale
from .trend import round_trend

COLORS = METRICS  # the name earlier code and tests use
BINS = 20  # bars of a histogram, about
TAIL = 0.95  # a histogram's axis ends at this quantile of the scores when a thin tail stretches it
PANEL_PT = 215  # the width of one panel of ``panels`` in points, about
MIN_N = 5  # categories with fewer test prompts are drawn pale: their mean says little

__all__ = ["BASE_COLOR", "BINS", "COLORS", "MEAN_COLOR", "METRICS", "MIN_N", "RULE_COLOR", "SCALES",
           "category_means", "color", "histogram_bins", "ordered", "round_trend", "scale", "score_histogram"]


def histogram_bins(metric: str, values: Sequence[float], marks: Sequence[float] = ()) -> list[float]:
    """Bin edges of equal, round width (1, 2 or 5 times a power of ten, so whole-number judge scores
    never fall between bars) over the scores and the lines drawn on them (``marks``). When a few
    scores stretch the axis (the top ``1 - TAIL`` of them reach past twice the span of the rest),
    the axis ends at that quantile and the last bar counts them too (``score_histogram`` hatches it).
    A line on an edge gets one more bar's width, so it is not lost on the frame."""
    import numpy as np

    lo, hi = min([*values, *marks]), max([*values, *marks])
    if values:
        cap = max([float(np.quantile(values, TAIL)), *marks])
        if hi - lo > 2 * (cap - lo) > 0:
            hi = cap
    if hi == lo:  # all equal: a span of SINGLE of the metric's range, inside the range
        full_lo, full_hi = scale(metric, [lo])
        half = SINGLE * (full_hi - full_lo) / 2
        lo, hi = max(full_lo, lo - half), min(full_hi, hi + half)
    step = figures.nice_step((hi - lo) / BINS)
    start = math.floor(lo / step + 1e-9) * step
    count = max(1, math.ceil((hi - start) / step - 1e-9))
    edges = [round(start + step * i, 10) for i in range(count + 1)]
    if marks and max(marks) >= edges[-1]:
        edges.append(round(edges[-1] + step, 10))
    if marks and min(marks) <= edges[0]:
        edges.insert(0, round(edges[0] - step, 10))
    return edges


def _rule_lines(ax, metric: str, rule: Mapping, thresholds: Mapping, handles: dict) -> None:
    """The pass rule's lines on a histogram: its bound on the mean, and the per-answer threshold
    only when the rule counts answers above it (a pass-rate condition). A metric the rule does
    not name gets neither."""
    said = rule.get(metric) or {}
    if said.get("mean") is not None:
        ax.axvline(said["mean"], color=RULE_COLOR, linestyle="--", linewidth=1.2)
        handles["rule"] = figures.line("pass rule's bound on the mean")
    if said.get("pass_rate") and thresholds.get(metric) is not None:
        ax.axvline(thresholds[metric], color=RULE_COLOR, linestyle=":", linewidth=1.2)
        handles["threshold"] = figures.line("per-answer threshold (pass-rate rule)", style=":")


def _rule_marks(metric: str, rule: Mapping, thresholds: Mapping) -> list[float]:
    said = rule.get(metric) or {}
    marks = [said.get("mean")]
    if said.get("pass_rate"):
        marks.append(thresholds.get(metric))
    return figures.clean(marks)


def _mean_mark(ax, x: float, tint: str, word: str, row: int, right: bool, span: tuple[float, float]) -> None:
    """A solid line at the mean, labelled with its value near the top: ``row`` 0 or 1 (so two labels
    never meet), on the line's ``right`` or left (the two means' labels face away from each other), on a
    white ground so no other line runs through them; flipped when the side has no room."""
    from ..formatting import num

    text = f"{word} {num(x)}"
    place = (x - span[0]) / ((span[1] - span[0]) or 1.0)
    room = (len(text) * 3.9 + 4) / PANEL_PT  # the label's width (7 pt type), in panel widths
    if right and place > 1 - room or not right and place < room:
        right = not right
    ax.axvline(x, color=tint, linewidth=1.5)
    ax.annotate(text, (x, 1), xycoords=("data", "axes fraction"),
                xytext=(3 if right else -3, -10 - 11 * row), textcoords="offset points",
                ha="left" if right else "right", fontsize=7, color=tint,
                bbox=figures.LABEL_BOX)


def score_histogram(scores: Mapping[str, Sequence[float | None]], path: Path, *,
                    base: Mapping[str, Sequence[float | None]] | None = None, rule: Mapping | None = None,
                    thresholds: Mapping[str, float] | None = None, means: Mapping[str, float] | None = None,
                    base_means: Mapping[str, float] | None = None) -> Path | None:
    """One histogram per metric of the per-answer scores, zoomed to the scores (``histogram_bins``;
    whole-number counts), the mean as a solid line, the untuned base's scores as a grey outline with
    its mean, and the pass rule's lines where ``rule`` (``pipeline.report.data.rule_targets``) names
    the metric. ``means``/``base_means`` are the means the report states (per prompt); else the
    answers' mean is drawn.
    """
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    series = {m: figures.clean(scores[m]) for m in ordered(scores)}
    series = {m: v for m, v in series.items() if v}
    if not series:
        return None
    fig, axes = figures.panels(len(series))
    handles: dict = {}
    for ax, (metric, values) in zip(axes, series.items()):
        before = figures.clean((base or {}).get(metric))
        stated = (means or {}).get(metric)
        mean = float(np.mean(values) if stated is None else stated)
        stated = (base_means or {}).get(metric)
        base_mean = None if not before else float(np.mean(before) if stated is None else stated)
        marks = _rule_marks(metric, rule or {}, thresholds or {})
        bins = histogram_bins(metric, values + before, marks + figures.clean([mean, base_mean]))
        lo, hi = bins[0], bins[-1]
        counts, _, bars = ax.hist(np.clip(values, lo, hi), bins=bins, color=color(metric), edgecolor="white",
                                  linewidth=0.5)
        top = max(counts)
        handles["mean"] = figures.line("mean", color=MEAN_COLOR, style="-")
        if before:
            base_counts, _, _ = ax.hist(np.clip(before, lo, hi), bins=bins, histtype="step",
                                        color=BASE_COLOR, linewidth=1.5)
            top = max(top, max(base_counts))
            handles["base"] = figures.patch("untuned base (round 0), its mean grey",
                                    facecolor="none", edgecolor=BASE_COLOR, linewidth=1.5)
        ax.set_ylim(0, max(1, top) * 1.35)  # headroom for the means' labels
        up = base_mean is None or mean >= base_mean
        _mean_mark(ax, mean, MEAN_COLOR, "mean", 0, up, (lo, hi))
        if base_mean is not None:
            _mean_mark(ax, base_mean, BASE_COLOR, "base", 1, not up, (lo, hi))
        _rule_lines(ax, metric, rule or {}, thresholds or {}, handles)
        ax.set_xlim(lo, hi)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_title(f"{metric}: {len(values)} answers", fontsize=10)
        folded = sum(v > hi for v in values + before)
        if folded:  # the last bar counts the tail too: hatched, and the axis label says so
            bars[-1].set_hatch("///")
        ax.set_xlabel(f"score (last bar: {folded} above {hi:g})" if folded else "score", fontsize=9)
        ax.set_ylabel("answers")
    figures.legend(fig, handles)
    return figures.save(fig, path)


def _category_bars(ax, x: float, width: float, stats: Sequence[Mapping | None], tint: str,
                   pale: Sequence[bool]):
    """Bars of the category means at ``x`` + offsets, CI whiskers where known; pale where ``pale``."""
    for i, s in enumerate(stats):
        if not s or s.get("mean") is None:
            continue
        alpha = 0.3 if pale[i] else 1.0
        ax.bar(i + x, s["mean"], width, color=tint, alpha=alpha)
        if s.get("ci_low") is not None and s.get("ci_high") is not None:
            yerr = [[max(0.0, s["mean"] - s["ci_low"])], [max(0.0, s["ci_high"] - s["mean"])]]
            ax.errorbar([i + x], [s["mean"]], yerr=yerr,
                        fmt="none", ecolor="#333333", alpha=max(alpha, 0.5), capsize=3, linewidth=1)


def category_means(by_category: Mapping[str, Mapping[str, Mapping]], metrics: Sequence[str],
                   path: Path, base: Mapping[str, Mapping[str, Mapping]] | None = None, *,
                   min_n: int = MIN_N, confidence: float | None = None) -> Path | None:
    """Per metric, each category's mean this round (metric colour) beside the untuned base's (grey),
    with ``confidence`` CI whiskers where ``{mean, ci_low, ci_high, n}`` give one and ``n`` under each
    name, on an axis from 0 to a little above the highest whisker; categories with fewer than
    ``min_n`` test prompts are pale."""
    cats = sorted(by_category)
    metrics = [m for m in ordered(metrics) if any((by_category[c].get(m) or {}).get("mean") is not None
                                                  for c in cats)]
    if not cats or not metrics:
        return None
    base = base or {}
    fig, axes = figures.panels(len(metrics), 3.6)
    counts = [max(((s or {}).get("n") or 0) for s in by_category[c].values()) for c in cats]
    pale = [n < min_n for n in counts]
    tilt = len(cats) > 4 or any(len(c) > 8 for c in cats)  # long or many names slant to fit
    handles: dict = {}
    for ax, metric in zip(axes, metrics):
        now = [by_category[c].get(metric) for c in cats]
        before = [(base.get(c) or {}).get(metric) for c in cats]
        paired = any((s or {}).get("mean") is not None for s in before)
        width = 0.4 if paired else 0.7
        if paired:
            _category_bars(ax, -width / 2, width, before, BASE_COLOR, pale)
            handles["base"] = figures.patch("untuned base (round 0)", facecolor=BASE_COLOR)
        _category_bars(ax, width / 2 if paired else 0.0, width, now, color(metric), pale)
        values = [v for s in now + before
                  for v in ((s or {}).get("mean"), (s or {}).get("ci_high"))
                  if v is not None]
        ax.set_ylim(*figures.zoom(metric, values, zero=True))  # a bar starts at 0: only its top end zooms
        ax.set_xticks(range(len(cats)), [f"{c[:14]}\nn={n}" for c, n in zip(cats, counts)],
                      rotation=35 if tilt else 0, ha="right" if tilt else "center", fontsize=8)
        ax.set_title(f"{metric} mean by category", fontsize=10)
        ax.set_ylabel(f"mean {metric}")
    handles["ci"] = figures.line(f"{figures.ci_label(confidence)} of the mean", color="#333333", style="-")
    if any(pale):
        handles["pale"] = figures.patch(f"pale: fewer than {min_n} prompts", facecolor="#cccccc", alpha=0.6)
    figures.legend(fig, handles)
    return figures.save(fig, path, bottom=0.33 if tilt else 0.2)  # room for the names and their n
