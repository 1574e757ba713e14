"""The confusion matrix of a label task (``metrics.json`` ``labels.confusion``) as a chart: one row per reference
label, one column per predicted label (``(other)``: an answer outside the label set), each cell its count and
shaded by its share of the row, the diagonal (right answers) outlined."""

from __future__ import annotations

from pathlib import Path

from .figures import plt, save

MAX_LABEL = 18  # characters of a label shown on an axis


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[:MAX_LABEL - 1] + "…"


def confusion_chart(confusion: dict, path: Path | None, *, title: str | None = None):
    """Draw ``confusion`` (``rows``, ``columns``, ``counts``) to ``path``; None when it has no rows."""
    rows, columns, counts = confusion.get("rows") or [], confusion.get("columns") or [], confusion.get("counts")
    if not rows or not columns or not counts:
        return None
    from matplotlib.patches import Rectangle

    cell = 0.62 if max(len(rows), len(columns)) <= 8 else 0.42
    width = max(4.2, 2.2 + cell * len(columns))
    height = max(3.2, 1.9 + cell * len(rows))
    fig, ax = plt().subplots(figsize=(width, height))
    shares = [[n / (sum(r) or 1) for n in r] for r in counts]
    ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    small = len(columns) > 8
    tilted = len(columns) > 3 or small
    for i, row in enumerate(counts):
        for j, n in enumerate(row):
            dark = shares[i][j] > 0.55
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7 if small else 9,
                    color="white" if dark else "#222222")
            if j < len(rows) and rows[i] == columns[j]:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#222222", linewidth=1.2))
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels([_short(c) for c in columns], rotation=35 if tilted else 0,
                       ha="right" if tilted else "center", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([_short(r) for r in rows], fontsize=8)
    ax.set_xlabel("predicted label (student)", fontsize=9)
    ax.set_ylabel("reference label (service)", fontsize=9)
    ax.set_title(title or "Confusion matrix (cell: count; shade: share of the row)", fontsize=9)
    longest = max(len(_short(r)) for r in rows)
    left = min(2.2, 0.75 + 0.065 * longest)
    under = 0.45 + (0.045 * max(len(_short(c)) for c in columns) if tilted else 0.1)  # inches below the axes
    return save(fig, path, bottom=min(0.45, under / height), top=1 - 0.45 / height, left=left, right=0.3)
