"""PNG charts for the round report, drawn with matplotlib's Agg backend (imported only when a chart is drawn).

Each function writes one file and returns its path, or returns None when there is nothing to draw. A metric has
the same colour and the same y (or x) range in every chart and every round: a panel is never zoomed to its data,
so a small change looks small. The untuned base (round 0) is always grey.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

COLORS = {"similarity": "#4c72b0", "precision": "#dd8452", "rougeL": "#55a868", "bleu": "#c44e52",
          "embedding": "#8172b3", "win_rate": "#937860"}
OTHER_COLORS = ("#da8bc3", "#ccb974", "#64b5cd", "#4d4d4d")
BASE_COLOR = "#9a9a9a"
SCALES = {"similarity": (0.0, 100.0), "precision": (0.0, 100.0), "bleu": (0.0, 100.0), "rougeL": (0.0, 1.0),
          "embedding": (0.0, 1.0), "win_rate": (0.0, 1.0)}
BINS = 20


def color(metric: str) -> str:
    """The metric's colour, the same in every chart (a metric without a fixed one gets a stable pick)."""
    return COLORS.get(metric) or OTHER_COLORS[zlib.crc32(metric.encode()) % len(OTHER_COLORS)]


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


def _legend(fig, handles: list) -> None:
    """One legend for the whole figure, above the panels, so it never covers a bar or a point."""
    if handles:
        fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8, frameon=False)


def _base_handle(kind: str):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    label = "untuned base (round 0)"
    if kind == "outline":
        return Patch(facecolor="none", edgecolor=BASE_COLOR, linewidth=1.5, label=label)
    if kind == "bar":
        return Patch(facecolor=BASE_COLOR, label=label)
    return Line2D([], [], color=BASE_COLOR, marker="o", linestyle="none", label=label)


def _rule_handle(label: str):
    from matplotlib.lines import Line2D

    return Line2D([], [], color="black", linestyle="--", linewidth=1, label=label)


def _save(fig, path: Path, bottom: float = 0.18) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Fixed margins: tight or constrained layout draws the figure an extra time and doubles the cost of a chart.
    width = fig.get_figwidth()  # margins in inches, so one narrow panel still fits its tick labels
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.25 / width, top=0.8, bottom=bottom, wspace=0.3)
    # No timestamp metadata: a rerun of the same round writes the same bytes, so its PR gets no empty changes.
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
    _plt().close(fig)
    return path


def _clean(values: Sequence[float | None] | None) -> list[float]:
    return [float(v) for v in values or () if v is not None]


def score_histogram(scores: Mapping[str, Sequence[float | None]], thresholds: Mapping[str, float], path: Path,
                    base: Mapping[str, Sequence[float | None]] | None = None) -> Path | None:
    """One histogram per metric of the per-answer scores over the metric's full range (fixed-width bins, so equal
    scores still make a bar), the untuned base's as a grey outline, the pass threshold as a dashed line."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    series = {m: _clean(v) for m, v in scores.items()}
    series = {m: v for m, v in series.items() if v}
    if not series:
        return None
    fig, axes = _panels(len(series))
    handles = {}
    for ax, (metric, values) in zip(axes, series.items()):
        before = _clean((base or {}).get(metric))
        lo, hi = scale(metric, values + before)
        bins = np.linspace(lo, hi, BINS + 1)
        ax.hist(values, bins=bins, color=color(metric), edgecolor="white")
        if before:
            ax.hist(before, bins=bins, histtype="step", color=BASE_COLOR, linewidth=1.5)
            handles["base"] = _base_handle("outline")
        if metric in thresholds:
            ax.axvline(thresholds[metric], color="black", linestyle="--", linewidth=1)
            handles["rule"] = _rule_handle("pass threshold")
        ax.set_xlim(lo, hi)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{metric}: this round", fontsize=10)
        ax.set_xlabel("score")
    axes[0].set_ylabel("answers")
    _legend(fig, list(handles.values()))
    return _save(fig, path)


def category_means(by_category: Mapping[str, Mapping[str, Mapping]], metrics: Sequence[str], path: Path,
                   base: Mapping[str, Mapping[str, Mapping]] | None = None) -> Path | None:
    """Per metric, the mean of each category this round (metric colour) beside the untuned base's (grey)."""
    cats = sorted(by_category)
    metrics = [m for m in metrics if any((by_category[c].get(m) or {}).get("mean") is not None for c in cats)]
    if not cats or not metrics:
        return None
    base = base or {}
    with_base = False
    fig, axes = _panels(len(metrics), 3.4)
    xs = list(range(len(cats)))
    tilt = len(cats) > 4 or any(len(c) > 8 for c in cats)  # long or many names slant to fit
    for ax, metric in zip(axes, metrics):
        means = [(by_category[c].get(metric) or {}).get("mean") for c in cats]
        before = [((base.get(c) or {}).get(metric) or {}).get("mean") for c in cats]
        width = 0.4 if any(v is not None for v in before) else 0.7
        with_base = with_base or width < 0.7
        if width < 0.7:
            ax.bar([x - width / 2 for x in xs], [v or 0.0 for v in before], width, color=BASE_COLOR)
        ax.bar([x + (width / 2 if width < 0.7 else 0) for x in xs], [v or 0.0 for v in means], width,
               color=color(metric))
        ax.set_ylim(*scale(metric, means + before))
        ax.set_xticks(xs, [c[:14] for c in cats], rotation=45 if tilt else 0, ha="right" if tilt else "center",
                      fontsize=8)
        ax.set_title(f"{metric} mean by category", fontsize=10)
    _legend(fig, [_base_handle("bar")] if with_base else [])
    return _save(fig, path, bottom=0.3 if tilt else 0.12)  # room for slanted category names


def _trend_panel(ax, metric: str, points: Sequence[Mapping], target: float | None) -> None:
    shown = [p for p in points if (p["stats"].get(metric) or {}).get("mean") is not None]
    xs = [p["x"] for p in shown]
    stats = [p["stats"][metric] for p in shown]
    means = [s["mean"] for s in stats]
    errs = [[max(0.0, s["mean"] - (s.get("ci_low") if s.get("ci_low") is not None else s["mean"])) for s in stats],
            [max(0.0, (s.get("ci_high") if s.get("ci_high") is not None else s["mean"]) - s["mean"]) for s in stats]]
    lo, hi = scale(metric, means + [s.get("ci_low") for s in stats] + [s.get("ci_high") for s in stats]
                   + ([target] if target is not None else []))
    ax.plot(xs, means, color=color(metric), linewidth=1.2, zorder=2)
    for p, x, y, down, up in zip(shown, xs, means, *errs):
        tint = BASE_COLOR if p["label"] == "base" else color(metric)
        ax.errorbar([x], [y], yerr=[[down], [up]], fmt="o", color=tint, ecolor=tint, capsize=4, zorder=3)
        ax.annotate(p["label"], (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    if target is not None:
        ax.axhline(target, color="black", linestyle="--", linewidth=1)
    ax.set_ylim(lo, hi)
    span = max(xs) - min(xs)
    left, right = (0.08 * span, 0.15 * span) if span else (max(1.0, abs(xs[0]) / 2),) * 2  # one round: centred
    ax.set_xlim(min(xs) - left, max(xs) + right)
    ax.set_title(f"{metric} mean and CI", fontsize=10)


def round_trend(points: Sequence[Mapping], metrics: Sequence[str], path: Path, *, x_label: str = "round",
                targets: Mapping[str, float] | None = None) -> Path | None:
    """Mean and CI of each metric per round (one panel per metric, on the metric's full range), the untuned base
    first; ``points`` are ``{label, x, stats: {metric: {mean, ci_low, ci_high}}}``, x is ``x_label``."""
    from matplotlib.ticker import MaxNLocator

    metrics = [m for m in metrics if any((p["stats"].get(m) or {}).get("mean") is not None for p in points)]
    if not points or not metrics:
        return None
    fig, axes = _panels(len(metrics))
    for ax, metric in zip(axes, metrics):
        _trend_panel(ax, metric, sorted(points, key=lambda p: p["x"]), (targets or {}).get(metric))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
        ax.set_xlabel(x_label)
    handles = [_base_handle("point")] if any(p["label"] == "base" for p in points) else []
    if any(m in (targets or {}) for m in metrics):
        handles.append(_rule_handle("pass rule"))
    _legend(fig, handles)
    return _save(fig, path)
