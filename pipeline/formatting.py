"""How duo writes numbers and rule conditions, on the terminal, in reports, PR
comments and decisions alike."""

from __future__ import annotations

from collections.abc import Mapping


def num(x) -> str:
    """A score for people: 1 decimal from 10 up (judge scores, BLEU), else 3 significant
    digits; ``–`` for none."""
    if x is None:
        return "–"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if x == int(x) and abs(x) >= 1:
        return str(int(x))
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.3g}"


def signed(x) -> str:
    """A difference with its sign (``+0.042``)."""
    return "–" if x is None else ("+" if x > 0 else "") + num(x)


def condition(row: Mapping) -> str:
    """The condition of a rule row: ``rougeL ci_low vs baseline > 0``."""
    vs = f" vs {row['vs']}" if row.get("vs") else ""
    op, bound = (">", row.get("above")) if row.get("above") is not None else (">=", row.get("min"))
    return f"{row['metric']} {row.get('stat', 'mean')}{vs} {op} {num(bound)}"


def rule_row(row: Mapping) -> str:
    """One checked rule row: ``ok: rougeL mean = 0.31 (needs >= 0.3)``, or why it could not be checked."""
    mark = "ok" if row.get("ok") else "FAIL"
    if row.get("value") is None:
        return f"{mark}: {condition(row)}: {row.get('why') or 'not computed'}"
    vs = f" vs {row['vs']}" if row.get("vs") else ""
    need = condition(row).rsplit(" ", 2)[-2:]
    return (f"{mark}: {row['metric']} {row.get('stat', 'mean')}{vs} = {num(row['value'])} "
            f"(needs {' '.join(need)})")
