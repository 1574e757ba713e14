"""The trend chart of the report: each metric's mean and CI per round, over training rows or rounds.

Each round's CI is its own mean's; two rounds' CIs may overlap while their paired difference (the same
prompts in both) is clear, so the chart says so and the paired differences have their own chart
(``forest``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from . import figures
from .figures import BASE_COLOR, LABEL_BOX, RULE_COLOR, color, ordered


def _limits(metric: str, stats: Sequence[Mapping], target: float | None) -> tuple[float, float]:
    """The y range: every mean and CI end shown (the base's band among them) and the rule's bound."""
    ends = [s.get(k) for s in stats for k in ("mean", "ci_low", "ci_high")]
    return figures.zoom(metric, ends + ([target] if target is not None else []))


def _label_rise(means: Sequence[float], i: int) -> float:
    """Where a point's label sits (points above the point): on the side its line to the next point
    leaves free (below a rise, above a fall or a level line), beside the last point."""
    if i + 1 >= len(means):
        return 0.0
    return -8.0 if means[i + 1] > means[i] else 8.0


def _trend_panel(ax, metric: str, points: Sequence[Mapping], target: float | None) -> None:
    shown = [p for p in points if (p["stats"].get(metric) or {}).get("mean") is not None]
    xs = [p["x"] for p in shown]
    stats = [p["stats"][metric] for p in shown]
    means = [s["mean"] for s in stats]
    base = next((p["stats"][metric] for p in shown if p["label"] == "base"), None)
    if base is not None:  # the baseline across the panel: is a round above the untuned student?
        ax.axhline(base["mean"], color=BASE_COLOR, linestyle="-", linewidth=1, zorder=1)
        if base.get("ci_low") is not None and base.get("ci_high") is not None:
            ax.axhspan(base["ci_low"], base["ci_high"], color=BASE_COLOR, alpha=0.15, linewidth=0, zorder=0)
    ax.plot(xs, means, color=color(metric), linewidth=1.2, zorder=2)
    for i, (p, x, s) in enumerate(zip(shown, xs, stats)):
        tint = BASE_COLOR if p["label"] == "base" else color(metric)
        low = s["ci_low"] if s.get("ci_low") is not None else s["mean"]
        high = s["ci_high"] if s.get("ci_high") is not None else s["mean"]
        yerr = [[max(0.0, s["mean"] - low)], [max(0.0, high - s["mean"])]]
        filled = p.get("verdict") == "pass" or p["label"] == "base"
        ax.errorbar([x], [s["mean"]], yerr=yerr, fmt="o",
                    color=tint, ecolor=tint, capsize=4, zorder=3,
                    markerfacecolor=tint if filled else "white")
        ax.annotate(p["label"], (x, s["mean"]), textcoords="offset points",
                    xytext=(7, _label_rise(means, i)), va="center", fontsize=8, zorder=4, bbox=LABEL_BOX)
    if target is not None:
        ax.axhline(target, color=RULE_COLOR, linestyle="--", linewidth=1)
    ax.set_ylim(*_limits(metric, stats, target))
    span = max(xs) - min(xs)
    if span:
        left, right = 0.08 * span, 0.15 * span
    else:  # one round: centred
        left = right = max(1.0, abs(xs[0]) / 2)
    ax.set_xlim(min(xs) - left, max(xs) + right)
    ax.set_title(f"{metric} mean by round", fontsize=10)
    ax.set_ylabel(f"mean {metric}")


def round_trend(points: Sequence[Mapping], metrics: Sequence[str], path: Path, *, x_label: str = "round",
                targets: Mapping[str, float] | None = None, confidence: float | None = None) -> Path | None:
    """Mean and ``confidence`` CI of each metric per round (one panel per metric, zoomed to the means,
    the CIs, the base's band and the rule's bound), the untuned base as a grey point and a grey band
    (its mean and CI) across the panel, a filled point for a round that passed; ``points`` are
    ``{label, x, verdict, stats: {metric: {mean, ci_low, ci_high}}}``, x is ``x_label``."""
    from matplotlib.ticker import MaxNLocator

    metrics = [m for m in ordered(metrics)
               if any((p["stats"].get(m) or {}).get("mean") is not None for p in points)]
    if not points or not metrics:
        return None
    fig, axes = figures.panels(len(metrics))
    for ax, metric in zip(axes, metrics):
        _trend_panel(ax, metric, sorted(points, key=lambda p: p["x"]), (targets or {}).get(metric))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
        ax.set_xlabel(x_label)
    ci = figures.ci_label(confidence)
    handles: dict = {"ci": figures.line(f"{ci} of each round's own mean (overlap is no test: see the paired "
                                        "differences)", color="#333333", style="-")}
    if any(p["label"] == "base" for p in points):
        handles["base"] = figures.patch("untuned base (round 0): mean and CI band", facecolor=BASE_COLOR,
                                        alpha=0.4)
    handles["pass"] = figures.line("filled: round passed; hollow: failed", color="#333333", style="none",
                                   marker="o")
    if any(m in (targets or {}) for m in metrics):
        handles["rule"] = figures.line("pass rule's bound on the mean")
    figures.legend(fig, handles, ncol=2)
    return figures.save(fig, path)
