"""JSON Schemas shipped with duo, and one place that turns validation errors into one-line problems."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

HERE = Path(__file__).parent


@cache
def load_schema(name: str) -> dict:
    """A schema by file name from this folder, or by path."""
    path = Path(name)
    if not path.is_absolute() and not path.exists():
        path = HERE / name
    return json.loads(path.read_text(encoding="utf-8"))


def _json_path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top)"


def _type_name(value: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", bool: "boolean", int: "integer", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _expected(schema: dict) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
    t = schema.get("type")
    if isinstance(t, list):
        return " or ".join(t)
    if t:
        return t
    if "oneOf" in schema:
        return " or ".join(_expected(s) for s in schema["oneOf"])
    return "a valid value"


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" + ("" if n == 1 else "s")


# What a value must be, by the keyword it breaks, with the keyword's bound.
BOUNDS = {
    "minimum": lambda b: f"at least {json.dumps(b)}",
    "exclusiveMinimum": lambda b: f"more than {json.dumps(b)}",
    "maximum": lambda b: f"at most {json.dumps(b)}",
    "exclusiveMaximum": lambda b: f"less than {json.dumps(b)}",
    "multipleOf": lambda b: f"a multiple of {json.dumps(b)}",
    "minLength": lambda b: f"at least {_count(b, 'character')}",
    "maxLength": lambda b: f"at most {_count(b, 'character')}",
    "minItems": lambda b: f"at least {_count(b, 'item')}",
    "maxItems": lambda b: f"at most {_count(b, 'item')}",
    "minProperties": lambda b: f"at least {_count(b, 'key')}",
    "maxProperties": lambda b: f"at most {_count(b, 'key')}",
    "uniqueItems": lambda b: "no repeated items",
    "pattern": lambda b: f"text matching {b}",
    "const": lambda b: json.dumps(b),
}


def _closest_option(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """The most telling error of a failed ``oneOf``: options whose type the value does not even have
    (``null`` for a mapping) are passed over, so ``judge: {provider: claude}`` is reported at
    ``provider``, not as "expected null"."""
    wrong_type = {e.relative_schema_path[0] for e in error.context
                  if e.validator == "type" and not e.relative_path and len(e.relative_schema_path) <= 2}
    near = [e for e in error.context if e.relative_schema_path[0] not in wrong_type]
    return jsonschema.exceptions.best_match(near or error.context)


def _one(error: jsonschema.ValidationError) -> list[str]:
    path = list(error.absolute_path)
    v = error.validator
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
        return [f"{_json_path(path + [k])}: unknown key{hint}" for k in extra]
    if v == "required":
        missing = [r for r in error.validator_value if r not in error.instance]
        return [f"{_json_path(path + [k])}: missing required field" for k in missing]
    if v == "oneOf" and error.context:
        return _one(_closest_option(error))
    found = json.dumps(error.instance, default=str)
    if len(found) > 60:
        found = found[:57] + "..."
    if v in ("type", "enum"):
        return [(f"{_json_path(path)}: found {found} ({_type_name(error.instance)}); "
                 f"expected {_expected(error.schema)}")]
    if v in BOUNDS:
        return [f"{_json_path(path)}: found {found}; expected {BOUNDS[v](error.validator_value)}"]
    # jsonschema's own words, less the value it starts with
    said = error.message.removeprefix(repr(error.instance)).strip()
    return [f"{_json_path(path)}: found {found}; {said or v}"]


def schema_problems(instance: Any, schema: dict) -> list[str]:
    """Every way ``instance`` breaks ``schema``, one line each, sorted by path."""
    validator = jsonschema.Draft202012Validator(schema)
    lines: list[str] = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))):
        # one ``required`` error per missing key
        lines.extend(line for line in _one(error) if line not in lines)
    return lines


def first_problem(instance: Any, schema: dict) -> str | None:
    """The first problem, or None when ``instance`` is valid."""
    problems = schema_problems(instance, schema)
    return problems[0] if problems else None
