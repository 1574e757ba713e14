"""Synthetic pairs of a structured task (issue 23, part 4): the service LLM is asked for pairs of the task's
own kind, and each pair's response is checked and turned into the target text before any other cleaning.

- ``json``: the response is a JSON value (written as JSON in the reply, or as its text) valid against the
  task's schema (``task.schema``, else the seed's logged ``response_format`` schema); the target is its
  JSON text. Dropped as ``invalid_json`` or ``schema_mismatch``.
- ``label``: the response is one label of the set (``task.labels``, else the train targets), compared as
  ``structured.normalize_label`` compares (case, spaces, quotes); the target is the set's own spelling.
  Dropped as ``unknown_label``.
- ``tool_call``: the response is a list of calls ``[{"name", "arguments"}]`` to the seed's own ``tools``,
  each call's arguments valid against that tool's ``parameters`` schema; the target is
  ``structured.tool_calls_text``'s JSON text. Dropped as ``invalid_tool_call``, ``unknown_tool`` or
  ``invalid_arguments``.

A kept synthetic row carries its seed's ``tools`` and ``response_format`` (of any kind), so training,
inference and judging see the request as it was logged. The prompt (``synthesize_structured.j2``) and reply
schema (``synthesized_<kind>_pairs.schema.json``) are files found like every prompt and schema: a file of that
name beside the config wins. The reply schema fixes each pair's shape only (a JSON value, a string, a list of
calls); the task's own rules are in the prompt and checked here, so a pair that breaks them is dropped alone
and counted, not its whole reply re-asked.
"""

from __future__ import annotations

import json
from typing import Any

from ..artifacts.synthesize import STRUCTURED_PROMPT, reply_schema_name
from ..store import Store
from . import structured

DROP_REASONS = ("invalid_json", "schema_mismatch", "unknown_label", "invalid_tool_call", "unknown_tool",
                "invalid_arguments")


def tools_of(row: dict) -> list:
    """A row's logged tool definitions (kept as JSON text in a training pair), [] when none."""
    tools = row.get("tools")
    if isinstance(tools, str):
        tools, _ = structured.parse_json(tools)
    return tools if isinstance(tools, list) else []


def tool_parameters(tools: Any) -> dict[str, dict | None]:
    """Tool name -> its parameters JSON Schema (None: none given), from OpenAI tool definitions."""
    out: dict[str, dict | None] = {}
    for tool in tools if isinstance(tools, list) else []:
        fn = tool.get("function") if isinstance(tool, dict) else None
        fn = fn if isinstance(fn, dict) else tool
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            params = fn.get("parameters")
            out[fn["name"]] = params if isinstance(params, dict) else None
    return out


class PairRules:
    """What a synthetic response must be for a task of ``kind`` (``text``: anything; cleaning as before)."""

    def __init__(self, kind: str, *, labels: list[str] | None = None, schema: dict | None = None):
        self.kind, self.labels, self.schema = kind, labels, schema

    @classmethod
    def for_task(cls, cfg, store: Store, train: list[dict]) -> PairRules:
        """The rules of the round's task: its kind (``task.kind``, else prepare's detection), label set
        (``task.labels``, else prepare's) and schema (``task.schema``, else the logged one)."""
        from ..stats.task_kind import labels_of, round_kind

        kind = round_kind(cfg, store)[0]
        labels = (labels_of(cfg, store) or structured.task_labels(train)) if kind == "label" else None
        schema = structured.task_schema(cfg, train) if kind == "json" else None
        return cls(kind, labels=labels, schema=schema)

    @property
    def structured(self) -> bool:
        return self.kind != "text"

    def prompt_name(self, cfg) -> str:
        """The synthesis prompt: ``synthesize_structured.j2`` for a structured task, else
        ``synthesize.prompt``."""
        return STRUCTURED_PROMPT if self.structured else cfg.synthesize.prompt

    def schema_name(self, cfg) -> str:
        """The reply schema: the kind's own for a structured task, else ``synthesize.schema``."""
        return reply_schema_name(self.kind) if self.structured else cfg.synthesize.schema

    def min_response_chars(self, s) -> int:
        """``synthesize.min_response_chars``, but none for a label: it is as short as it is ("yes")."""
        return 0 if self.kind == "label" else s.min_response_chars

    def prompt_vars(self, seed_row: dict) -> dict:
        """The structured prompt's variables (none for a text task): ``kind``, ``labels``, ``schema`` and
        ``tools`` (JSON text)."""
        if not self.structured:
            return {}
        schema = structured.row_schema(seed_row, self.schema) if self.kind == "json" else None
        tools = tools_of(seed_row) if self.kind == "tool_call" else None
        return {"kind": self.kind, "labels": self.labels,
                "schema": json.dumps(schema, indent=1, ensure_ascii=False) if schema is not None else None,
                "tools": json.dumps(tools, indent=1, ensure_ascii=False) if tools else None}

    @staticmethod
    def carried(seed_row: dict) -> dict:
        """The seed's ``tools`` and ``response_format``, for the synthetic row made from it."""
        return structured.request_params(seed_row)

    @property
    def length_filtered(self) -> bool:
        """Whether the seeds' length band applies: not to a label or a tool call (its length says nothing)."""
        return self.kind in ("text", "json")

    def target(self, response: Any, seed_row: dict) -> tuple[Any, str | None, dict]:
        """(the target text, None, {}) of a valid ``response``; else (its text as given, the drop reason,
        details). A text task's response comes back as it is."""
        if self.kind == "json":
            text, why, info = self._json(response, structured.row_schema(seed_row, self.schema))
        elif self.kind == "label":
            label = structured.normalize_label(response, self.labels) if isinstance(response, str) else None
            ok = label is not None and label in (self.labels or [])
            text, why, info = (label, None, {}) if ok else (None, "unknown_label", {"labels": self.labels})
        elif self.kind == "tool_call":
            text, why, info = self._calls(response, tool_parameters(tools_of(seed_row)))
        else:
            return response, None, {}
        if why is None:
            return text, None, {}
        if isinstance(response, str) or response is None:
            return response, why, info
        return json.dumps(response, ensure_ascii=False), why, info

    @staticmethod
    def _json(response: Any, schema: dict | None) -> tuple[Any, str | None, dict]:
        value = response
        if isinstance(response, str):
            value, why = structured.parse_json(response)
            if why:
                return None, "invalid_json", {"error": why}
        elif response is None:
            return None, "invalid_json", {"error": "no response"}
        if schema is not None and (problem := structured.schema_problem(value, schema)) is not None:
            return None, "schema_mismatch", {"error": problem}
        return json.dumps(value, ensure_ascii=False), None, {}

    @staticmethod
    def _calls(response: Any, tools: dict[str, dict | None]) -> tuple[Any, str | None, dict]:
        calls, why = structured.parse_tool_calls(response)
        if why:
            return None, "invalid_tool_call", {"error": why}
        for call in calls:
            if call["name"] not in tools:
                return None, "unknown_tool", {"error": f"{call['name']!r} is not one of {sorted(tools)}"}
            if not call["arguments_valid"]:
                return None, "invalid_arguments", {"error": f"{call['name']}: arguments not a JSON object"}
            params = tools[call["name"]]
            if params is not None and (problem := structured.schema_problem(call["arguments"], params)):
                return None, "invalid_arguments", {"error": f"{call['name']}: {problem}"}
        text, why = structured.tool_calls_text([{"name": c["name"], "arguments": c["arguments"]}
                                                for c in calls])
        return (None, "invalid_tool_call", {"error": why}) if why else (text, None, {})
