"""PNG charts for the round report, drawn with matplotlib's Agg backend (imported only when a chart is drawn).

Each function writes one file and returns its path, or returns None when there is nothing to draw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display on runners; must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, bottom: float = 0.18) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Fixed margins: tight or constrained layout draws the figure an extra time and doubles the cost of a chart.
    fig.subplots_adjust(left=0.08, right=0.98, top=0.88, bottom=bottom, wspace=0.35)
    # No timestamp metadata: a rerun of the same round writes the same bytes, so its PR gets no empty changes.
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
    _plt().close(fig)
    return path


def score_histogram(scores: Mapping[str, Sequence[float | None]], thresholds: Mapping[str, float],
                    path: Path) -> Path | None:
    """One histogram per metric of the per-sample scores, with the metric's pass threshold as a dashed line."""
    series = {m: [float(v) for v in vals if v is not None] for m, vals in scores.items()}
    series = {m: v for m, v in series.items() if v}
    if not series:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(series), figsize=(3.2 * len(series) + 0.8, 3), squeeze=False)
    for ax, (i, (metric, values)) in zip(axes[0], enumerate(series.items())):
        ax.hist(values, bins=min(20, max(5, len(values))), color=COLORS[i % len(COLORS)], edgecolor="white")
        if metric in thresholds:
            ax.axvline(thresholds[metric], color="black", linestyle="--", linewidth=1, label="threshold")
            ax.legend(fontsize=7)
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("score")
    axes[0][0].set_ylabel("samples")
    return _save(fig, path)


def category_means(by_category: Mapping[str, Mapping[str, Mapping]], metrics: Sequence[str],
                   path: Path) -> Path | None:
    """Grouped bars: the mean of each metric per category (one panel per metric, scales differ)."""
    cats = sorted(by_category)
    metrics = [m for m in metrics if any((by_category[c].get(m) or {}).get("mean") is not None for c in cats)]
    if not cats or not metrics:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics) + 0.8, 3.2), squeeze=False)
    for ax, (i, metric) in zip(axes[0], enumerate(metrics)):
        means = [(by_category[c].get(metric) or {}).get("mean") or 0.0 for c in cats]
        ax.bar(range(len(cats)), means, color=COLORS[i % len(COLORS)])
        ax.set_xticks(range(len(cats)), [c[:14] for c in cats], rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{metric} mean", fontsize=10)
    return _save(fig, path, bottom=0.3)  # room for the rotated category names


def round_trend(history: Mapping[int, Mapping[str, float | None]], path: Path,
                targets: Mapping[str, float] | None = None) -> Path | None:
    """Mean of each metric by round (one panel per metric), with the pass rule's minimum as a dashed line."""
    rounds = sorted(history)
    metrics = sorted({m for r in rounds for m, v in history[r].items() if v is not None})
    if not rounds or not metrics:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics) + 0.8, 3), squeeze=False)
    for ax, (i, metric) in zip(axes[0], enumerate(metrics)):
        xs = [r for r in rounds if history[r].get(metric) is not None]
        ax.plot(xs, [history[r][metric] for r in xs], marker="o", color=COLORS[i % len(COLORS)])
        if metric in (targets or {}):
            ax.axhline(targets[metric], color="black", linestyle="--", linewidth=1, label="pass rule min")
            ax.legend(fontsize=7)
        ax.set_xticks(rounds)
        ax.set_xlabel("round")
        ax.set_title(f"{metric} mean", fontsize=10)
    return _save(fig, path)
