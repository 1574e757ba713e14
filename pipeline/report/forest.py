"""The paired-difference chart of a round (a forest plot): what decides a round, drawn.

One panel per metric (each metric on its own scale), one row per comparison: this round minus the
untuned base, minus the previous round, minus the service's own second answer (``vs_baseline``,
``vs_previous``, ``vs_service`` of ``metrics.json``). Each row is a point at the paired difference
with a whisker over its CI, coloured and shaped by its ``change`` word; a line marks 0 (no
difference) and a dashed line the pass rule's bound where a rule row names that metric and that
comparison. The axes zoom to the data (0 and the bounds included), so a difference of 0.03 is as wide
as it is readable; the numbers stand in a column on the right.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .figures import RULE_COLOR, ci_label, line, ordered, plt, save, scale

COMPARISONS = (("baseline", "vs_baseline"), ("previous", "vs_previous"), ("service", "vs_service"))
STATS = ("diff", "ci_low", "ci_high")  # the stats of a difference a rule row may bound
STAT_WORDS = {"diff": "difference", "ci_low": "CI low", "ci_high": "CI high"}
CHANGES = {"better": ("#1a9850", "^"), "worse": ("#d73027", "v"), "borderline": ("#e08214", "D"),
           "no detectable change": ("#6b6b6b", "o")}
UNSAID = ("#6b6b6b", "o")  # a change word the chart does not know
ZERO_COLOR = "#444444"
ROW = 0.5  # inches per comparison row, at least
LINE = 0.14  # inches per line of the numbers
GAP = 0.85  # inches between two panels: the upper one's ticks and label, the lower one's title
HEAD, FOOT = 1.05, 0.55  # inches above the first panel (title, legend) and below the last
LEFT, PLOT, RIGHT = 1.9, 4.4, 2.9  # inches: row names, the panels, the numbers
TEXT_PT = 7.5  # the numbers' font size
PAD = 0.1  # of the data's span, left free at each end of an axis


def _usable(d) -> bool:
    return isinstance(d, Mapping) and all(d.get(k) is not None for k in STATS)


def comparison_rows(ev: Mapping) -> list[dict]:
    """The chart's rows, each ``{"vs": [rule names], "label", "diffs": {metric: diff}}``, in the order
    base, previous, service. When the previous round is the base (round 1), its differences are the
    base's: one row stands for both."""
    base_round = ev.get("baseline_round", 0)
    prev = ev.get("previous_round")
    labels = {"baseline": f"vs untuned base\n(round {base_round})",
              "previous": f"vs previous\n(round {prev})",
              "service": "vs the service's own\nsecond answer"}
    rows: list[dict] = []
    for vs, key in COMPARISONS:
        diffs = {m: d for m, d in (ev.get(key) or {}).items() if _usable(d)}
        if not diffs:
            continue
        same = [r for r in rows if r["vs"] == ["baseline"] and r["diffs"] == diffs]
        if vs == "previous" and prev == base_round and same:
            same[0]["vs"].append("previous")
            same[0]["label"] = f"vs untuned base\n= previous (round {prev})"
            continue
        rows.append({"vs": [vs], "label": labels[vs], "diffs": diffs})
    return rows


def rule_bounds(ev: Mapping) -> dict[tuple[str, str], list[dict]]:
    """(metric, comparison) -> the rule rows that bound a stat of that difference, each with its
    ``bound`` (its ``min``, else its ``above``)."""
    out: dict[tuple[str, str], list[dict]] = {}
    for r in ev.get("rule") or []:
        bound = r.get("min") if r.get("min") is not None else r.get("above")
        if r.get("vs") in dict(COMPARISONS) and r.get("stat") in STATS and bound is not None:
            out.setdefault((r["metric"], r["vs"]), []).append({**r, "bound": float(bound)})
    return out


def _limits(values: list[float]) -> tuple[float, float]:
    lo, hi = min([0.0, *values]), max([0.0, *values])
    margin = PAD * (hi - lo) if hi > lo else 1.0
    return lo - margin, hi + margin


def _rule_text(r: Mapping, merged: bool) -> str:
    from ..formatting import num

    op = ">" if r.get("min") is None else "≥"
    whose = f" vs {r['vs']}" if merged else ""
    held = "met" if r.get("ok") else "NOT met"
    return f"rule{whose}: {STAT_WORDS[r['stat']]} {op} {num(r['bound'])} {held}"


def _numbers(ax, y: float, d: Mapping, rules: list[dict], merged: bool, tint: str) -> None:
    """The row's numbers right of the panel: the difference, its CI (and p-value) and the change word
    in the change's colour, then each rule row on it in black; the block centred on the row."""
    from ..formatting import signed

    text = f"{signed(d['diff'])} [{signed(d['ci_low'])}, {signed(d['ci_high'])}]"
    if d.get("p_value") is not None:
        text += f"  p={d['p_value']:.2g}"
    where = {"xy": (1.02, y), "xycoords": ax.get_yaxis_transform(), "textcoords": "offset points",
             "va": "center", "fontsize": TEXT_PT, "linespacing": 1.25, "annotation_clip": False}
    step = TEXT_PT * 1.25  # one line, in points
    ax.annotate(f"{text}\n{d.get('change') or ''}", xytext=(0, len(rules) * step / 2), color=tint, **where)
    if rules:
        ax.annotate("\n".join(_rule_text(r, merged) for r in rules), xytext=(0, -step), color="black",
                    **where)


def _panel(ax, metric: str, rows: list[dict], bounds: Mapping, ev: Mapping) -> set[str]:
    """One metric's rows; returns the change words drawn."""
    seen, drawn = [], set()
    ax.axvline(0.0, color=ZERO_COLOR, linewidth=1, zorder=1)
    for y, row in enumerate(rows):
        rules = [r for vs in row["vs"] for r in bounds.get((metric, vs), [])]
        for r in rules:
            ax.plot([r["bound"], r["bound"]], [y - 0.4, y + 0.4], color=RULE_COLOR, linestyle="--",
                    linewidth=1.3, zorder=2)
            seen.append(r["bound"])
        d = row["diffs"].get(metric)
        if d is None:
            ax.text(1.02, y, "not compared", transform=ax.get_yaxis_transform(), va="center", fontsize=7.5,
                    color="#6b6b6b")
            continue
        tint, marker = CHANGES.get(d.get("change"), UNSAID)
        drawn.add(d.get("change"))
        xerr = [[max(0.0, d["diff"] - d["ci_low"])], [max(0.0, d["ci_high"] - d["diff"])]]
        ax.errorbar([d["diff"]], [y], xerr=xerr, fmt=marker, color=tint, ecolor=tint, markersize=7,
                    capsize=4, elinewidth=1.8, zorder=3)
        seen += [d["ci_low"], d["ci_high"], d["diff"]]
        _numbers(ax, y, d, rules, len(row["vs"]) > 1, tint)
    ax.set_xlim(*_limits(seen))
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_yticks(range(len(rows)), [r["label"] for r in rows], fontsize=8)
    ax.grid(axis="x", color="#e6e6e6", linewidth=0.8, zorder=0)
    ax.set_axisbelow(True)
    lo, hi = scale(metric, [(ev.get("metrics", {}).get(metric) or {}).get("mean")])
    ax.set_title(f"{metric} (scores {lo:g} to {hi:g})", fontsize=10, loc="left")
    ax.set_xlabel(f"difference in mean {metric}", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    return drawn


def forest_chart(ev: Mapping, path: Path | None, *, confidence: float) -> Path | None:
    """The round's paired differences, one panel per metric (see the module); None for round 0 (the
    base is what the others are compared with) and when ``ev`` holds no difference with its CI."""
    if ev.get("round") == ev.get("baseline_round", 0):
        return None
    rows = comparison_rows(ev)
    metrics = ordered({m for r in rows for m in r["diffs"]})
    if not rows or not metrics:
        return None
    bounds = rule_bounds(ev)
    lines = max(2 + sum(len(bounds.get((m, vs), [])) for vs in r["vs"]) for r in rows for m in metrics)
    height = len(rows) * max(ROW, LINE * lines + 0.1)  # a row fits its block of numbers
    total = HEAD + len(metrics) * height + (len(metrics) - 1) * GAP + FOOT
    fig, axes = plt().subplots(len(metrics), 1, figsize=(LEFT + PLOT + RIGHT, total), squeeze=False)
    drawn: set = set()
    for ax, metric in zip(axes[:, 0], metrics):
        drawn |= _panel(ax, metric, rows, bounds, ev)
    ci = ci_label(confidence)
    fig.suptitle(f"Round {ev.get('round')}: paired differences (this round minus each comparison, same "
                 f"prompts), {ci}", fontsize=10, y=1 - 0.12 / total)
    handles = {w: line(w, color=tint, style="none", marker=marker)
               for w, (tint, marker) in CHANGES.items() if w in drawn}
    handles["ci"] = line(f"whisker: {ci}", color="#333333", style="-")
    handles["zero"] = line("0: no difference", color=ZERO_COLOR, style="-")
    if any(b for key, b in bounds.items() if key[0] in metrics):
        handles["rule"] = line("pass rule's bound")
    fig.legend(handles=list(handles.values()), loc="upper center", bbox_to_anchor=(0.5, 1 - 0.38 / total),
               ncol=len(handles), fontsize=8, frameon=False, handlelength=1.5, columnspacing=1.2)
    fig.subplots_adjust(hspace=GAP / height)
    return save(fig, path, bottom=FOOT / total, top=1 - HEAD / total, left=LEFT, right=RIGHT)
