"""One source row as a record, or the reason it is not valid: what ``prepare`` keeps and
``validate`` checks on the data file's first rows."""

from __future__ import annotations

from ..config import Config
from .chat import chat
from .chat_logs import chat_record, is_chat_row
from .sources import SourceRow


def _columns_record(data: dict, cfg: Config) -> tuple[dict | None, str | None]:
    """(instruction, response, system, messages) of an instruction/response row, or the
    reason it is not valid."""
    cols = cfg.data.columns
    out: dict = {}
    for field, col in (("instruction", cols.instruction), ("response", cols.response)):
        if col not in data:
            has = ", ".join(map(str, data))
            return None, f"missing column '{col}' (data.columns.{field}; row has: {has})"
        value = data[col]
        if not isinstance(value, str):
            return None, f"column '{col}' is {type(value).__name__}, expected a non-empty string"
        if not value.strip():
            return None, f"column '{col}' is empty"
        out[field] = value.strip()
    # Optional: a missing or empty one is no system prompt.
    value = data.get(cols.system) if cols.system else None
    if value is not None and not isinstance(value, str):
        return None, f"column '{cols.system}' is {type(value).__name__}, expected a string or null"
    out["system"] = (value.strip() or None) if value else None
    out["messages"] = chat(out["instruction"], out["response"], out["system"])
    return out, None


def _category(data: dict, cfg: Config) -> tuple[str | None, str | None]:
    """(category or None, problem): from ``data.columns.category``, in the row or in its
    ``metadata`` (OpenAI's stored completions keep their tags there)."""
    col = cfg.data.columns.category
    if not col:
        return None, None
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    if col not in data and col not in meta:
        return None, f"missing column '{col}' (data.columns.category)"
    value = data[col] if col in data else meta[col]
    if isinstance(value, (dict, list)):
        return None, f"column '{col}' is {type(value).__name__}, expected a string or null"
    return (None if value is None or str(value).strip() == "" else str(value).strip()), None


def check_row(row: SourceRow, cfg: Config) -> tuple[dict | None, str | None]:
    """The record of a valid row (``instruction``, ``response``, ``category``, ``system``,
    ``messages``), or the reason it is not valid. ``data.shape`` says how to read a row:
    instruction/response columns or chat turns (``auto``: chat turns when the row has them)."""
    if row.error:
        return None, row.error
    if not isinstance(row.data, dict):
        return None, f"expected an object with columns, found {type(row.data).__name__}"
    shape = cfg.data.shape
    if shape == "chat" or (shape == "auto" and is_chat_row(row.data)):
        out, why = chat_record(row.data)
    else:
        out, why = _columns_record(row.data, cfg)
    if out is None:
        return None, why
    category, why = _category(row.data, cfg)
    if why:
        return None, why
    size = sum(len(m["content"]) for m in out["messages"]) + len(category or "")
    if size > cfg.data.max_row_chars:
        return None, (f"row has {size} characters; "
                      f"expected at most {cfg.data.max_row_chars} (data.max_row_chars)")
    return {"instruction": out["instruction"], "response": out["response"], "category": category,
            "system": out["system"], "messages": out["messages"]}, None
