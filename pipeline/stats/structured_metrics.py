"""Per-prompt metrics of structured answers (``task.kind``: json, label, tool_call), each 0-1, so the paired
CIs, the pass rule, the parity rule and the forest chart treat them as any other metric.

- json: ``json_valid`` (1 when the answer is one JSON document), ``schema_valid`` (1 when it also conforms
  to the task's schema: ``task.schema`` or the logged ``response_format``; with no schema, as
  ``json_valid``), ``field_match`` (the share of leaf fields that match, see ``field_match``);
- label: ``exact_match`` (1 when the answer is the reference label, case and whitespace aside); per-class
  accuracy, macro-F1 and the confusion matrix summarise a round (``label_summary``);
- tool_call: ``tool_name`` (the share of calls to the right functions), ``tool_args`` (argument match,
  per argument, of the calls paired by name), ``tool_args_valid`` (the share of calls whose arguments
  are a JSON object; 0 when the answer is no list of calls).

Field comparison (``field_match``, ``tool_args``): both sides are flattened into leaf paths (nested objects
are walked; an array is one leaf). A leaf matches when both sides have it and: numbers are equal (a bool
is not a number), strings are equal after case folding and whitespace collapsing, arrays hold the same
set of (normalised) items. The score is matched leaves / leaves on either side, so a missing key and an
extra key both cost; key order never matters.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..data.structured import conforms, normalize_label, parse_json, parse_tool_calls, row_schema

KIND_METRICS = {
    "text": (),
    "json": ("json_valid", "schema_valid", "field_match"),
    "label": ("exact_match",),
    "tool_call": ("tool_name", "tool_args", "tool_args_valid"),
}
STRUCTURED = tuple(m for ms in KIND_METRICS.values() for m in ms)
THRESHOLDS = {m: 1.0 for m in STRUCTURED}  # a sample passes a structured metric when it is fully right
# The pass rule used when evaluate.pass_rule / offline_pass_rule are left at their defaults (a prose rule);
# the first metric is the decision metric.
DEFAULT_RULES = {
    "json": [{"metric": "field_match", "stat": "mean", "min": 0.8},
             {"metric": "schema_valid", "stat": "mean", "min": 0.95}],
    "label": [{"metric": "exact_match", "stat": "mean", "min": 0.8}],
    "tool_call": [{"metric": "tool_args", "stat": "mean", "min": 0.8},
                  {"metric": "tool_name", "stat": "mean", "min": 0.9}],
}
OTHER = "(other)"  # a predicted label outside the label set


def _norm(value: Any) -> Any:
    """A value as compared: strings case-folded with whitespace collapsed, objects and arrays likewise inside."""
    if isinstance(value, str):
        return " ".join(value.split()).casefold()
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


def _key(value: Any) -> str:
    return json.dumps(_norm(value), sort_keys=True, ensure_ascii=False)


def _leaves(value: Any, path: tuple = ()) -> dict[tuple, Any]:
    if isinstance(value, dict) and value:
        out: dict[tuple, Any] = {}
        for k, v in value.items():
            out.update(_leaves(v, (*path, k)))
        return out
    return {path: value}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, list) and isinstance(b, list):
        return {_key(x) for x in a} == {_key(x) for x in b}
    if type(a) is not type(b):
        return False
    return _key(a) == _key(b)


def field_match(answer: Any, reference: Any) -> float:
    """Matched leaf fields / leaf fields on either side (see the module doc); 1.0 for two empty objects."""
    got, want = _leaves(answer), _leaves(reference)
    paths = set(got) | set(want)
    if not paths:
        return 1.0
    return sum(1 for p in paths if p in got and p in want and _same(got[p], want[p])) / len(paths)


# ------------------------------------------------------------------------------------------------ json


def json_scores(answer: str, reference: str, schema: dict | None) -> dict[str, float | None]:
    """``json_valid``, ``schema_valid``, ``field_match`` of one answer (``field_match`` None when the
    reference itself is not JSON)."""
    ref, ref_why = parse_json(reference)
    got, why = parse_json(answer)
    valid = why is None
    return {"json_valid": float(valid),
            "schema_valid": float(valid and conforms(got, schema)),
            "field_match": None if ref_why else (field_match(got, ref) if valid else 0.0)}


# ----------------------------------------------------------------------------------------------- label


def label_scores(answer: str, reference: str, labels: list[str] | None) -> dict[str, float]:
    return {"exact_match": float(normalize_label(answer, labels) == normalize_label(reference, labels))}


def label_summary(answers: Sequence[str], references: Sequence[str], labels: list[str] | None) -> dict:
    """Per-class accuracy (recall), precision and F1, macro-F1 and the confusion matrix (rows: the reference
    label, columns: the predicted one; a prediction outside the label set is ``(other)``)."""
    pairs = [(normalize_label(r, labels), normalize_label(a, labels)) for a, r in zip(answers, references)]
    classes = list(labels) if labels else []
    classes += sorted({r for r, _ in pairs} - set(classes))  # a reference label outside the set: its own row
    known = set(classes)
    pairs = [(r, a if a in known else OTHER) for r, a in pairs]
    columns = classes + ([OTHER] if any(a == OTHER for _, a in pairs) else [])
    counts = Counter(pairs)
    per_class, f1s = {}, []
    for c in classes:
        tp = counts[(c, c)]
        support = sum(n for (r, _), n in counts.items() if r == c)
        predicted = sum(n for (_, a), n in counts.items() if a == c)
        recall = tp / support if support else None
        precision = tp / predicted if predicted else None
        f1 = (2 * tp / (support + predicted)) if (support + predicted) else None
        per_class[c] = {"support": support, "accuracy": _r(recall), "precision": _r(precision), "f1": _r(f1)}
        if support:
            f1s.append(f1 or 0.0)
    return {"labels": classes, "accuracy": _r(sum(counts[(c, c)] for c in classes) / len(pairs) if pairs else None),
            "macro_f1": _r(sum(f1s) / len(f1s) if f1s else None), "per_class": per_class,
            "confusion": {"rows": classes, "columns": columns,
                          "counts": [[counts[(r, c)] for c in columns] for r in classes]}}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


# ------------------------------------------------------------------------------------------- tool calls


def tool_scores(answer: str, reference: str) -> dict[str, float | None]:
    """``tool_name``, ``tool_args``, ``tool_args_valid`` of one answer (None when the reference is no list of
    calls). Calls are paired by function name in order; an unpaired call on either side scores 0."""
    want, why = parse_tool_calls(reference)
    if why:
        return {"tool_name": None, "tool_args": None, "tool_args_valid": None}
    got, why = parse_tool_calls(answer)
    if why:
        return {"tool_name": 0.0, "tool_args": 0.0, "tool_args_valid": 0.0}
    size = max(len(want), len(got))
    names = sum((Counter(c["name"] for c in want) & Counter(c["name"] for c in got)).values())
    free, args = list(got), 0.0
    for call in want:
        match = next((c for c in free if c["name"] == call["name"]), None)
        if match is not None:
            free.remove(match)
            args += field_match(match["arguments"], call["arguments"]) if match["arguments_valid"] else 0.0
    return {"tool_name": names / size, "tool_args": args / size,
            "tool_args_valid": sum(1 for c in got if c["arguments_valid"]) / len(got)}


# ----------------------------------------------------------------------------------------------- all


def structured_scores(kind: str, rows: Sequence[dict], *, schema: dict | None = None,
                      labels: list[str] | None = None) -> dict[str, list[float | None]]:
    """Metric -> one score per row (``answer``, ``reference``) for the metrics of ``kind`` ({} for text).
    A json row is checked against ``schema`` when given, else its own logged ``response_format`` schema."""
    if kind == "json":
        each = [json_scores(r["answer"], r["reference"], row_schema(r, schema)) for r in rows]
    elif kind == "label":
        each = [label_scores(r["answer"], r["reference"], labels) for r in rows]
    elif kind == "tool_call":
        each = [tool_scores(r["answer"], r["reference"]) for r in rows]
    else:
        return {}
    return {m: [e[m] for e in each] for m in KIND_METRICS[kind]}
