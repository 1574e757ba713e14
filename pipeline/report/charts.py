"""PNG charts for the round report, drawn with matplotlib's Agg backend (imported
only when a chart is drawn).

Each function writes one file and returns its path (with ``path=None`` it returns the unsaved
matplotlib figure instead), or returns None when there is nothing to draw. One map, ``METRICS``,
gives every metric its colour and its place: the panels of every chart come in that order, in that
colour, on the metric's full range (a panel is never zoomed to its data, so a small change looks
small). The untuned base (round 0) is always grey. A line is drawn for the pass rule only where
the rule names the metric.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

# metric -> colour; the order of the keys is the order of the panels in every chart.
METRICS = {"similarity": "#4c72b0", "precision": "#dd8452", "win_rate": "#937860", "rougeL": "#55a868",
           "bleu": "#c44e52", "embedding": "#8172b3"}
COLORS = METRICS  # the name earlier code and tests use
OTHER_COLORS = ("#da8bc3", "#ccb974", "#64b5cd", "#4d4d4d")
BASE_COLOR = "#9a9a9a"
RULE_COLOR = "black"
MEAN_COLOR = "#222222"
SCALES = {"similarity": (0.0, 100.0), "precision": (0.0, 100.0), "bleu": (0.0, 100.0), "rougeL": (0.0, 1.0),
          "embedding": (0.0, 1.0), "win_rate": (0.0, 1.0)}
BINS = 20
MIN_N = 5  # categories with fewer test prompts are drawn pale: their mean says little


def color(metric: str) -> str:
    """The metric's colour, the same in every chart (a metric without a fixed one gets a stable pick)."""
    return METRICS.get(metric) or OTHER_COLORS[zlib.crc32(metric.encode()) % len(OTHER_COLORS)]


def ordered(metrics) -> list[str]:
    """``metrics`` in the one order every chart uses: ``METRICS``' order, then any other by name."""
    known = list(METRICS)
    return sorted(dict.fromkeys(metrics), key=lambda m: (known.index(m) if m in known else len(known), m))


def scale(metric: str, values: Sequence[float | None] = ()) -> tuple[float, float]:
    """The metric's full range (0-1 or 0-100), widened only when a value falls outside it."""
    seen = [float(v) for v in values if v is not None]
    if metric in SCALES:
        lo, hi = SCALES[metric]
    else:  # an unknown metric: 0-1 when its values fit, else 0-100, else up to its largest value
        top = max(seen, default=1.0)
        lo, hi = 0.0, 1.0 if top <= 1 else 100.0 if top <= 100 else float(top)
    return min([lo, *seen]), max([hi, *seen])


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display on runners; must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def _panels(count: int, height: float = 3.2):
    fig, axes = _plt().subplots(1, count, figsize=(3.6 * count + 0.6, height), squeeze=False)
    return fig, axes[0]


def _legend(fig, handles: Mapping) -> None:
    """One legend for the whole figure, above the panels, so it never covers a bar or a point."""
    if handles:
        fig.legend(handles=list(handles.values()), loc="upper center", ncol=min(len(handles), 4), fontsize=8,
                   frameon=False)


def _line(label: str, color: str = RULE_COLOR, style: str = "--", marker: str | None = None):
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, linestyle=style, linewidth=1.2, marker=marker, label=label)


def _patch(label: str, **kwargs):
    from matplotlib.patches import Patch

    return Patch(label=label, **kwargs)


def _save(fig, path: Path | None, bottom: float = 0.18):
    """Write ``fig`` to ``path`` as PNG and close it; with ``path`` None, return the
    figure itself (to inspect)."""
    # Fixed margins: tight or constrained layout draws the figure an extra time and doubles the
    # cost of a chart.
    width = fig.get_figwidth()  # margins in inches, so one narrow panel still fits its tick labels
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.25 / width, top=0.78, bottom=bottom, wspace=0.3)
    if path is None:
        return fig
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # No timestamp metadata: a rerun of the same round writes the same bytes, so its PR gets no
    # empty changes.
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
    _plt().close(fig)
    return path


def _clean(values: Sequence[float | None] | None) -> list[float]:
    return [float(v) for v in values or () if v is not None]


def _rule_lines(ax, metric: str, rule: Mapping, thresholds: Mapping, handles: dict) -> None:
    """The pass rule's lines on a histogram: its bound on the mean, and the per-answer threshold
    only when the rule counts answers above it (a pass-rate condition). A metric the rule does
    not name gets neither."""
    said = rule.get(metric) or {}
    if said.get("mean") is not None:
        ax.axvline(said["mean"], color=RULE_COLOR, linestyle="--", linewidth=1.2)
        handles["rule"] = _line("pass rule's bound on the mean")
    if said.get("pass_rate") and thresholds.get(metric) is not None:
        ax.axvline(thresholds[metric], color=RULE_COLOR, linestyle=":", linewidth=1.2)
        handles["threshold"] = _line("per-answer threshold (pass-rate rule)", style=":")


def _mean_mark(ax, x: float, tint: str, word: str, row: int, span: tuple[float, float]) -> None:
    """A solid line at the mean, labelled with its value near the top (row 0 or 1, so two labels
    never meet), to the right of the line unless the line is in the right quarter of the panel."""
    from ..formatting import num

    right = x < span[0] + 0.75 * (span[1] - span[0])
    ax.axvline(x, color=tint, linewidth=1.5)
    ax.annotate(f"{word} {num(x)}", (x, 1),
                xycoords=("data", "axes fraction"),
                xytext=(3 if right else -3, -10 - 10 * row),
                textcoords="offset points",
                ha="left" if right else "right",
                fontsize=7,
                color=tint)


def score_histogram(scores: Mapping[str, Sequence[float | None]], path: Path, *,
                    base: Mapping[str, Sequence[float | None]] | None = None, rule: Mapping | None = None,
                    thresholds: Mapping[str, float] | None = None, means: Mapping[str, float] | None = None,
                    base_means: Mapping[str, float] | None = None) -> Path | None:
    """One histogram per metric of the per-answer scores over the metric's full range (fixed-width
    bins, so equal scores still make a bar; whole-number counts), the mean as a solid line, the
    untuned base's scores as a grey outline with its mean, and the pass rule's lines where ``rule``
    (``pipeline.report.data.rule_targets``) names the metric. ``means``/``base_means`` are the means
    the report states (per prompt); else the answers' mean is drawn.
    """
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    series = {m: _clean(scores[m]) for m in ordered(scores)}
    series = {m: v for m, v in series.items() if v}
    if not series:
        return None
    fig, axes = _panels(len(series))
    handles: dict = {}
    for ax, (metric, values) in zip(axes, series.items()):
        before = _clean((base or {}).get(metric))
        lo, hi = scale(metric, values + before)
        bins = np.linspace(lo, hi, BINS + 1)
        counts, _, _ = ax.hist(values, bins=bins, color=color(metric), edgecolor="white", linewidth=0.5)
        top = max(counts)
        handles["mean"] = _line("mean", color=MEAN_COLOR, style="-")
        if before:
            base_counts, _, _ = ax.hist(before, bins=bins, histtype="step", color=BASE_COLOR, linewidth=1.5)
            top = max(top, max(base_counts))
            handles["base"] = _patch("untuned base (round 0)",
                                     facecolor="none", edgecolor=BASE_COLOR, linewidth=1.5)
        ax.set_ylim(0, max(1, top) * 1.3)  # headroom for the means' labels
        stated = (means or {}).get(metric)
        _mean_mark(ax, float(np.mean(values) if stated is None else stated), MEAN_COLOR, "mean", 0, (lo, hi))
        if before:
            stated = (base_means or {}).get(metric)
            base_mean = float(np.mean(before) if stated is None else stated)
            _mean_mark(ax, base_mean, BASE_COLOR, "base", 1, (lo, hi))
        _rule_lines(ax, metric, rule or {}, thresholds or {}, handles)
        ax.set_xlim(lo, hi)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_title(f"{metric}: {len(values)} answers", fontsize=10)
        ax.set_xlabel("score")
    axes[0].set_ylabel("answers")
    _legend(fig, handles)
    return _save(fig, path)


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
                   min_n: int = MIN_N) -> Path | None:
    """Per metric, each category's mean this round (metric colour) beside the untuned base's (grey),
    with CI whiskers where ``{mean, ci_low, ci_high, n}`` give one and ``n`` under each name;
    categories with fewer than ``min_n`` test prompts are pale."""
    cats = sorted(by_category)
    metrics = [m for m in ordered(metrics) if any((by_category[c].get(m) or {}).get("mean") is not None
                                                  for c in cats)]
    if not cats or not metrics:
        return None
    base = base or {}
    fig, axes = _panels(len(metrics), 3.6)
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
            handles["base"] = _patch("untuned base (round 0)", facecolor=BASE_COLOR)
        _category_bars(ax, width / 2 if paired else 0.0, width, now, color(metric), pale)
        values = [v for s in now + before
                  for v in ((s or {}).get("mean"), (s or {}).get("ci_high"))
                  if v is not None]
        ax.set_ylim(*scale(metric, values))
        ax.set_xticks(range(len(cats)), [f"{c[:14]}\nn={n}" for c, n in zip(cats, counts)],
                      rotation=35 if tilt else 0, ha="right" if tilt else "center", fontsize=8)
        ax.set_title(f"{metric} mean by category", fontsize=10)
    handles["ci"] = _line("CI of the mean", color="#333333", style="-")
    if any(pale):
        handles["pale"] = _patch(f"pale: fewer than {min_n} prompts", facecolor="#cccccc", alpha=0.6)
    _legend(fig, handles)
    return _save(fig, path, bottom=0.33 if tilt else 0.2)  # room for the names and their n


def _trend_panel(ax, metric: str, points: Sequence[Mapping], target: float | None) -> None:
    shown = [p for p in points if (p["stats"].get(metric) or {}).get("mean") is not None]
    xs = [p["x"] for p in shown]
    stats = [p["stats"][metric] for p in shown]
    means = [s["mean"] for s in stats]
    lo, hi = scale(metric, means + [s.get("ci_low") for s in stats] + [s.get("ci_high") for s in stats]
                   + ([target] if target is not None else []))
    base = next((p["stats"][metric] for p in shown if p["label"] == "base"), None)
    if base is not None:  # the baseline across the panel: is a round above the untuned student?
        ax.axhline(base["mean"], color=BASE_COLOR, linestyle="-", linewidth=1, zorder=1)
        if base.get("ci_low") is not None and base.get("ci_high") is not None:
            ax.axhspan(base["ci_low"], base["ci_high"], color=BASE_COLOR, alpha=0.15, linewidth=0, zorder=0)
    ax.plot(xs, means, color=color(metric), linewidth=1.2, zorder=2)
    for p, x, s in zip(shown, xs, stats):
        tint = BASE_COLOR if p["label"] == "base" else color(metric)
        low = s["ci_low"] if s.get("ci_low") is not None else s["mean"]
        high = s["ci_high"] if s.get("ci_high") is not None else s["mean"]
        yerr = [[max(0.0, s["mean"] - low)], [max(0.0, high - s["mean"])]]
        filled = p.get("verdict") == "pass" or p["label"] == "base"
        ax.errorbar([x], [s["mean"]], yerr=yerr, fmt="o",
                    color=tint, ecolor=tint, capsize=4, zorder=3,
                    markerfacecolor=tint if filled else "white")
        ax.annotate(p["label"], (x, s["mean"]), textcoords="offset points", xytext=(6, 6), fontsize=8)
    if target is not None:
        ax.axhline(target, color=RULE_COLOR, linestyle="--", linewidth=1)
    ax.set_ylim(lo, hi)
    span = max(xs) - min(xs)
    if span:
        left, right = 0.08 * span, 0.15 * span
    else:  # one round: centred
        left = right = max(1.0, abs(xs[0]) / 2)
    ax.set_xlim(min(xs) - left, max(xs) + right)
    ax.set_title(f"{metric} mean and CI by round", fontsize=10)


def round_trend(points: Sequence[Mapping], metrics: Sequence[str], path: Path, *, x_label: str = "round",
                targets: Mapping[str, float] | None = None) -> Path | None:
    """Mean and CI of each metric per round (one panel per metric, on the metric's full range), the
    untuned base as a grey point and a grey band (its mean and CI) across the panel, a filled point
    for a round that passed; ``points`` are ``{label, x, verdict, stats: {metric: {mean, ci_low,
    ci_high}}}``, x is ``x_label``."""
    from matplotlib.ticker import MaxNLocator

    metrics = [m for m in ordered(metrics)
               if any((p["stats"].get(m) or {}).get("mean") is not None for p in points)]
    if not points or not metrics:
        return None
    fig, axes = _panels(len(metrics))
    for ax, metric in zip(axes, metrics):
        _trend_panel(ax, metric, sorted(points, key=lambda p: p["x"]), (targets or {}).get(metric))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
        ax.set_xlabel(x_label)
    handles: dict = {}
    if any(p["label"] == "base" for p in points):
        handles["base"] = _patch("untuned base (round 0): mean and CI band", facecolor=BASE_COLOR, alpha=0.4)
    handles["pass"] = _line("filled: round passed; hollow: failed",
                            color="#333333", style="none", marker="o")
    if any(m in (targets or {}) for m in metrics):
        handles["rule"] = _line("pass rule's bound on the mean")
    _legend(fig, handles)
    return _save(fig, path)
