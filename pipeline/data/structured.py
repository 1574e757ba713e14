"""Structured answers: JSON text, tool calls and labels parsed and checked, the kind of a task and its schema.

Targets are text in every record (``prepare``'s rows, answers, synthetic pairs):
- ``json``: the JSON text itself;
- ``label``: the label;
- ``tool_call``: the JSON text ``[{"name": "...", "arguments": {...}}]`` (``tool_calls_text`` writes it from
  an OpenAI message's ``tool_calls``; arguments parsed to an object).

Parsing is strict: an answer is valid JSON when ``json.loads`` reads all of it (surrounding whitespace aside); a
Markdown code fence around it makes it invalid, as it would be for a program reading the answer.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import DuoError

KINDS = ("text", "json", "label", "tool_call")
JSON_FORMATS = ("json_schema", "json_object")  # response_format types that ask for JSON
LABEL_MAX_CHARS = 40  # a label target is at most this long...
LABEL_MAX_DISTINCT = 20  # ...and a label task has at most this many distinct targets
_SPACES = re.compile(r"\s+")
_EDGE = "\"'`.!;:,() \t\n"


def parse_json(text: Any) -> tuple[Any, str | None]:
    """(value, None) when ``text`` is one JSON document, else (None, why not)."""
    if not isinstance(text, str):
        return None, f"answer is {type(text).__name__}, not text"
    if not text.strip():
        return None, "answer is empty"
    try:
        return json.loads(text), None
    except ValueError as exc:
        return None, f"not JSON: {str(exc).splitlines()[0]}"


def schema_problem(obj: Any, schema: dict) -> str | None:
    """The first way ``obj`` breaks the JSON Schema ``schema`` (``path: message``), or None when it conforms."""
    import jsonschema

    validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    error = jsonschema.exceptions.best_match(validator_cls(schema).iter_errors(obj))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"


def conforms(obj: Any, schema: dict | None) -> bool:
    """True when ``obj`` is valid against ``schema`` (no schema: always)."""
    return schema is None or schema_problem(obj, schema) is None


def check_schema(schema: Any, where: str) -> dict:
    """``schema`` when it is a usable JSON Schema, else DuoError naming ``where``."""
    import jsonschema

    if not isinstance(schema, dict):
        raise DuoError(f"{where}: the schema is {type(schema).__name__}; expected a JSON Schema object")
    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise DuoError(f"{where}: not a valid JSON Schema: {exc.message}") from None
    return schema


# ------------------------------------------------------------------------------------------ tool calls


def _arguments(value: Any) -> tuple[dict | None, bool]:
    """(arguments as an object or None, whether they were a valid JSON object)."""
    if isinstance(value, str):
        value, why = parse_json(value) if value.strip() else ({}, None)
        if why:
            return None, False
    if value is None:
        return {}, True
    return (value, True) if isinstance(value, dict) else (None, False)


def _one_call(item: Any) -> dict | None:
    if not isinstance(item, dict):
        return None
    fn = item.get("function") if isinstance(item.get("function"), dict) else item  # OpenAI's shape or ours
    name = fn.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    arguments, valid = _arguments(fn.get("arguments", fn.get("parameters")))
    return {"name": name.strip(), "arguments": arguments, "arguments_valid": valid}


def parse_tool_calls(text: Any) -> tuple[list[dict] | None, str | None]:
    """(calls, None) of a tool-call answer, else (None, why not). ``text`` is the JSON text of a list of calls
    (``[{"name", "arguments"}]``, or OpenAI's ``{"type": "function", "function": {...}}`` items), or one call.
    Each call comes back as ``{"name", "arguments" (an object, or None when it was not a JSON object),
    "arguments_valid"}``; arguments given as a JSON string are parsed."""
    value, why = parse_json(text) if not isinstance(text, list) else (text, None)
    if why:
        return None, why
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list) or not items:
        return None, "not a list of tool calls"
    calls = [_one_call(item) for item in items]
    if any(c is None for c in calls):
        return None, "a tool call without a function name"
    return calls, None


def tool_calls_text(tool_calls: list) -> tuple[str | None, str | None]:
    """The target text of a logged message's ``tool_calls`` (``[{"name", "arguments"}]``, arguments as an
    object), or (None, why not)."""
    calls, why = parse_tool_calls(tool_calls)
    if why:
        return None, f"tool_calls: {why}"
    if not all(c["arguments_valid"] for c in calls):
        return None, "tool_calls: arguments that are not a JSON object"
    return json.dumps([{"name": c["name"], "arguments": c["arguments"]} for c in calls], ensure_ascii=False), None


def template_kwargs(row: dict) -> dict:
    """What a row adds to ``apply_chat_template``: its logged ``tools`` (the template's tool support renders
    them, as a server does for a request with tools), else nothing."""
    tools = row.get("tools")
    if isinstance(tools, str):  # a training pair keeps them as JSON text (one Arrow type for every row)
        tools = json.loads(tools)
    return {"tools": tools} if tools else {}


def api_messages(messages: list[dict]) -> list[dict]:
    """Turns as the chat completions API takes them back: an assistant turn holding tool calls (their text) gets
    ``tool_calls`` with made-up ids (``call_<n>``), and each ``tool`` turn the id of the call it answers, in
    order. Other turns are unchanged."""
    out, pending, n = [], [], 0
    for m in messages:
        calls = parse_tool_calls(m.get("content"))[0] if m.get("role") == "assistant" else None
        if calls and all(c["arguments_valid"] for c in calls):
            ids = [f"call_{n + k}" for k in range(len(calls))]
            n, pending = n + len(calls), list(ids)
            out.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": i, "type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
                for i, c in zip(ids, calls)]})
        elif m.get("role") == "tool":
            out.append({"role": "tool", "tool_call_id": pending.pop(0) if pending else f"call_{n}",
                        "content": m.get("content")})
        else:
            out.append(m)
    return out


def request_params(row: dict) -> dict:
    """What a row's logged request adds to a new request for the same prompt: its ``tools`` and
    ``response_format``."""
    return {k: row[k] for k in ("tools", "response_format") if row.get(k)}


# ------------------------------------------------------------------------------------------------ labels


def _norm(text: str) -> str:
    return _SPACES.sub(" ", text).strip(_EDGE).casefold()


def normalize_label(text: Any, labels: list[str] | None = None) -> str:
    """``text`` as a label: case-folded, inner whitespace collapsed, quotes and end punctuation cut; the
    matching member of ``labels`` (compared the same way) when there is one, else the normalised text."""
    norm = _norm(text if isinstance(text, str) else "")
    for label in labels or []:
        if _norm(label) == norm:
            return label
    return norm


# ----------------------------------------------------------------------------------------- kind and schema


def logged_schema(row: dict) -> dict | None:
    """The JSON Schema of a row's logged ``response_format`` (``json_schema.schema``), or None."""
    rf = row.get("response_format")
    if not isinstance(rf, dict) or rf.get("type") != "json_schema":
        return None
    spec = rf.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return schema if isinstance(schema, dict) else None


def task_schema(cfg, rows: list[dict]) -> dict | None:
    """The task's JSON Schema: the file ``task.schema`` names (relative to the config), else the logged
    ``response_format`` schema most rows carry, else None."""
    path = getattr(cfg.task, "schema", None)
    if path:
        file = cfg.resolve(path)
        try:
            schema = json.loads(Path(file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise DuoError(f"task.schema: cannot read '{file}': {exc.strerror}") from None
        except ValueError as exc:
            raise DuoError(f"task.schema: '{file}' is not JSON: {str(exc).splitlines()[0]}") from None
        return check_schema(schema, f"task.schema ({file})")
    counts = Counter(json.dumps(s, sort_keys=True) for r in rows if (s := logged_schema(r)) is not None)
    return json.loads(counts.most_common(1)[0][0]) if counts else None


def row_schema(row: dict, fallback: dict | None) -> dict | None:
    """The schema one answer is checked against: the task's (``task.schema`` or the common logged one)
    when given, else the row's own logged one."""
    return fallback if fallback is not None else logged_schema(row)


def task_labels(rows: list[dict]) -> list[str]:
    """The distinct (normalised) targets of ``rows`` in order of first appearance."""
    seen: dict[str, None] = {}
    for r in rows:
        seen.setdefault(normalize_label(r.get("response")), None)
    return [label for label in seen if label]


def is_tool_call_row(row: dict) -> bool:
    """True when a row offered tools and its target is a tool call."""
    return bool(row.get("tools")) and parse_tool_calls(row.get("response"))[1] is None


def _json_format(row: dict) -> bool:
    rf = row.get("response_format")
    return isinstance(rf, dict) and rf.get("type") in JSON_FORMATS


def detect_kind(rows: list[dict]) -> tuple[str, str]:
    """(kind, why) of a task from its rows' targets, where that is unambiguous, else ``text``:
    every target a tool call -> ``tool_call``; every target JSON and every row asking for JSON
    (``response_format``) -> ``json``; at most ``LABEL_MAX_DISTINCT`` distinct short targets each seen
    at least twice on average -> ``label``."""
    if not rows:
        return "text", "no rows"
    n = len(rows)
    calls = sum(1 for r in rows if is_tool_call_row(r))
    if calls == n:
        return "tool_call", f"all {n} targets are tool calls"
    if calls:
        return "text", f"{calls} of {n} targets are tool calls, the others are not"
    if all(_json_format(r) for r in rows) and \
            all(isinstance(parse_json(r.get("response"))[0], (dict, list)) for r in rows):
        return "json", f"all {n} targets are JSON and every request asked for JSON (response_format)"
    targets = [normalize_label(r.get("response")) for r in rows]
    distinct = set(targets)
    if (all(0 < len(t) <= LABEL_MAX_CHARS for t in targets)
            and len(distinct) <= min(LABEL_MAX_DISTINCT, n / 2)):
        return "label", f"{n} targets take {len(distinct)} distinct short values"
    return "text", "free text targets"
