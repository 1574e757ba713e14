"""What every chart of the report shares: one colour and one order per metric, each metric's natural
range, the zoom of an axis to its data, and the figure plumbing (matplotlib's Agg backend, imported
only when a chart is drawn; one legend above the panels; fixed margins; PNGs without timestamps).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

# metric -> colour; the order of the keys is the order of the panels in every chart.
# A structured task's own metrics (docs/structured.md) come first: they are what its rule decides on.
METRICS = {"field_match": "#264653", "schema_valid": "#b08a1e", "json_valid": "#2a9d8f", "exact_match": "#e76f51",
           "tool_args": "#1982c4", "tool_name": "#6a4c93", "tool_args_valid": "#5c8a1e",
           "similarity": "#4c72b0", "precision": "#dd8452", "win_rate": "#937860", "rougeL": "#55a868",
           "bleu": "#c44e52", "embedding": "#8172b3"}
OTHER_COLORS = ("#da8bc3", "#ccb974", "#64b5cd", "#4d4d4d")
BASE_COLOR = "#9a9a9a"
RULE_COLOR = "black"
MEAN_COLOR = "#222222"
SCALES = {"similarity": (0.0, 100.0), "precision": (0.0, 100.0), "bleu": (0.0, 100.0), "rougeL": (0.0, 1.0),
          "embedding": (0.0, 1.0), "win_rate": (0.0, 1.0),
          **{m: (0.0, 1.0) for m in ("json_valid", "schema_valid", "field_match", "exact_match", "tool_name",
                                     "tool_args", "tool_args_valid")}}
PAD = 0.08  # of the data's span, left free at each end of a zoomed axis
LABEL_BOX = {"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.85}
SINGLE = 0.05  # of the metric's range: the span an axis gets when all its values are equal


def color(metric: str) -> str:
    """The metric's colour, the same in every chart (a metric without a fixed one gets a stable pick)."""
    return METRICS.get(metric) or OTHER_COLORS[zlib.crc32(metric.encode()) % len(OTHER_COLORS)]


def ordered(metrics) -> list[str]:
    """``metrics`` in the one order every chart uses: ``METRICS``' order, then any other by name."""
    known = list(METRICS)
    return sorted(dict.fromkeys(metrics), key=lambda m: (known.index(m) if m in known else len(known), m))


def clean(values: Sequence[float | None] | None) -> list[float]:
    return [float(v) for v in values or () if v is not None]


def scale(metric: str, values: Sequence[float | None] = ()) -> tuple[float, float]:
    """The metric's full range (0-1 or 0-100), widened only when a value falls outside it."""
    seen = clean(values)
    if metric in SCALES:
        lo, hi = SCALES[metric]
    else:  # an unknown metric: 0-1 when its values fit, else 0-100, else up to its largest value
        top = max(seen, default=1.0)
        lo, hi = 0.0, 1.0 if top <= 1 else 100.0 if top <= 100 else float(top)
    return min([lo, *seen]), max([hi, *seen])


def zoom(metric: str, values: Sequence[float | None], *, zero: bool = False) -> tuple[float, float]:
    """Axis limits that fit ``values`` (and 0 with ``zero``) with a margin of ``PAD`` of their span, so a
    change of a few hundredths stays visible; the margin never reaches past the metric's range when the
    values are inside it. Equal values get a span of ``SINGLE`` of the range, centred on them."""
    seen = clean(values) + ([0.0] if zero else [])
    full_lo, full_hi = scale(metric, seen)
    if not seen:
        return full_lo, full_hi
    lo, hi = min(seen), max(seen)
    if hi == lo:
        half = SINGLE * (full_hi - full_lo) / 2
        lo, hi = lo - half, hi + half
    margin = PAD * (hi - lo)
    low = lo - margin if lo < full_lo else max(lo - margin, full_lo)
    return low, hi + margin if hi > full_hi else min(hi + margin, full_hi)


def nice_step(raw: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten that is at least ``raw`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(raw))
    return next(f * power for f in (1, 2, 5, 10) if f * power >= raw * (1 - 1e-9))


def ci_label(confidence: float | None) -> str:
    """``95% CI`` for the configured confidence (``CI`` where a caller did not give it)."""
    return "CI" if confidence is None else f"{confidence:.0%} CI"


def plt():
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display on runners; must precede pyplot
    from matplotlib import pyplot

    return pyplot


def panels(count: int, height: float = 3.2):
    fig, axes = plt().subplots(1, count, figsize=(3.8 * count + 0.6, height), squeeze=False)
    return fig, axes[0]


def legend(fig, handles: Mapping, ncol: int = 4) -> None:
    """One legend for the whole figure, above the panels, so it never covers a bar or a point."""
    if handles:
        fig.legend(handles=list(handles.values()), loc="upper center", ncol=min(len(handles), ncol),
                   fontsize=8, frameon=False)


def line(label: str, color: str = RULE_COLOR, style: str = "--", marker: str | None = None, **kwargs):
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, linestyle=style, linewidth=1.2, marker=marker, label=label, **kwargs)


def patch(label: str, **kwargs):
    from matplotlib.patches import Patch

    return Patch(label=label, **kwargs)


def save(fig, path: Path | None, bottom: float = 0.18, *, top: float = 0.78, left: float = 0.75,
         right: float = 0.25):
    """Write ``fig`` to ``path`` as PNG and close it; with ``path`` None, return the figure itself (to
    inspect). ``left`` and ``right`` are margins in inches, so one narrow panel still fits its labels."""
    # Fixed margins: tight or constrained layout draws the figure an extra time and doubles the
    # cost of a chart.
    width = fig.get_figwidth()
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=top, bottom=bottom, wspace=0.38)
    if path is None:
        return fig
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # No timestamp metadata: a rerun of the same round writes the same bytes, so its PR gets no
    # empty changes.
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
    plt().close(fig)
    return path
