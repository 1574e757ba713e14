"""One source row as a record, or the reason it is not valid; the valid, distinct rows of a
source and whether they are enough for the split: what ``prepare`` keeps and ``validate`` checks
before anything is made."""

from __future__ import annotations

import json
import re

from ..config import Config
from ..errors import DuoError
from .chat import chat
from .chat_logs import chat_record, is_chat_row
from .dedup import normalize
from .hygiene import dropped, refusal, screen
from .sessions import session_of
from .sources import Source, SourceRow

_SURROGATE = re.compile("[\ud800-\udfff]")


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


def _unencodable(text: str) -> str | None:
    """Why ``text`` cannot be written as UTF-8 (a lone surrogate, which a JSON ``"\\ud800"`` escape
    decodes to), or None."""
    found = _SURROGATE.search(text)
    if found is None:
        return None
    return f"has a lone surrogate (U+{ord(found.group()):04X}) at character {found.start() + 1}"


def _bad_text(texts: list[tuple[str, object]]) -> str | None:
    """The first of ``(where, value)`` whose text UTF-8 cannot hold, as a bad-row reason."""
    for where, value in texts:
        if isinstance(value, str) and (why := _unencodable(value)):
            return f"{where} {why}; expected UTF-8 text"
    return None


def _texts(data: dict, out: dict, category: str | None, cfg: Config,
           chat_shaped: bool) -> list[tuple[str, object]]:
    """Every text a record keeps, named as the source names it (a column, or a chat message)."""
    cols = cfg.data.columns
    if chat_shaped:
        found = [(f"message {n} ({m['role']})", m["content"])
                 for n, m in enumerate(out["messages"], 1)]
    else:
        found = [(f"column '{col}'", data.get(col))
                 for col in (cols.instruction, cols.response, cols.system) if col]
    if cols.category:
        found.append((f"column '{cols.category}'", category))
    return found


def check_row(row: SourceRow, cfg: Config) -> tuple[dict | None, str | None]:
    """The record of a valid row (``instruction``, ``response``, ``category``, ``system``,
    ``messages``), or the reason it is not valid. ``data.shape`` says how to read a row:
    instruction/response columns or chat turns (``auto``: chat turns when the row has them)."""
    if row.error:
        return None, row.error
    if not isinstance(row.data, dict):
        return None, f"expected an object with columns, found {type(row.data).__name__}"
    shape = cfg.data.shape
    chat_shaped = shape == "chat" or (shape == "auto" and is_chat_row(row.data))
    out, why = chat_record(row.data) if chat_shaped else _columns_record(row.data, cfg)
    if out is None:
        return None, why
    category, why = _category(row.data, cfg)
    if why:
        return None, why
    if why := _bad_text(_texts(row.data, out, category, cfg, chat_shaped)):
        return None, why
    size = sum(len(m["content"]) for m in out["messages"]) + len(category or "")
    if size > cfg.data.max_row_chars:
        return None, (f"row has {size} characters; "
                      f"expected at most {cfg.data.max_row_chars} (data.max_row_chars)")
    extras = {k: out[k] for k in ("tools", "response_format") if k in out}  # structured rows (chat logs)
    return {"instruction": out["instruction"], "response": out["response"], "category": category,
            "system": out["system"], "messages": out["messages"], **extras}, None


def invalid_reason(row: SourceRow, cfg: Config) -> str | None:
    """Why ``row`` is a bad row (what ``duo validate`` shows), or None: valid, or dropped by
    ``data.hygiene`` (a refusal, cut, empty or failed answer is the service's, not the mapping's)."""
    if not row.error and screen(row.data, cfg):
        return None
    return check_row(row, cfg)[1]


def prompt_key(record: dict) -> str:
    """What makes two rows the same prompt: the instruction, with the system prompt and earlier
    turns when any (one question under two system prompts is two tasks)."""
    asked = record["messages"][:-1]
    if len(asked) == 1:
        return normalize(record["instruction"]) or record["instruction"]
    return "\n".join(f"{m['role']}: {normalize(m['content']) or m['content']}" for m in asked)


def _kept(data, cfg: Config):
    """A bad row as ``bad_rows.jsonl`` keeps it: an oversized one cut to its first
    ``data.max_row_chars``."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, default=str)
    limit = cfg.data.max_row_chars
    return data if len(text) <= limit else text[:limit] + "... (cut)"


def read_rows(cfg: Config, src: Source) -> tuple[list[dict], list[dict]]:
    """(valid rows, bad-row reports) in source order; raises on the first bad row when
    ``data.on_bad_row`` is ``fail``.

    A repeated prompt is a ``duplicate`` in either mode (logs repeat prompts; a repeat must not
    land on both sides of the split): the first is kept, the rest reported. A row whose service
    answer ``data.hygiene`` drops (a refusal, cut, empty or an error) is reported ``dropped`` in
    either mode; a row's ``session`` is kept when the source has one (``sessions``).
    """
    valid, bad = [], []
    seen: dict[str, int] = {}
    for row in src.rows:
        if not row.error and (found := screen(row.data, cfg)):
            bad.append(dropped(row.line, *found, _kept(row.data, cfg)))
            continue
        parsed, reason = check_row(row, cfg)
        if reason:
            if cfg.data.on_bad_row == "fail":
                raise DuoError(f"{src.where(row)}: {reason} (data.on_bad_row is 'fail'; set it to "
                               "'skip' to report bad rows in bad_rows.jsonl and go on)")
            bad.append({"line": row.line, "kind": "invalid", "reason": reason,
                        "row": _kept(row.data, cfg)})
            continue
        if said := refusal(parsed["response"], cfg):
            why = f"the answer is a refusal ('{said}')"
            bad.append(dropped(row.line, "refusal", why, _kept(row.data, cfg)))
            continue
        key = prompt_key(parsed)
        if key in seen:
            bad.append({"line": row.line, "kind": "duplicate", "row": row.data,
                        "reason": f"duplicate instruction (same as {src.unit} {seen[key]})"})
            continue
        seen[key] = row.line
        session = session_of(row.data, cfg)
        valid.append({"id": f"cov-{row.number:06d}", **parsed, "source_line": row.line,
                      **({"session": session} if session else {})})
    return valid, bad


def holdout_count(n: int, size: float, duplicates: int = 0) -> int:
    """Rows to hold out of ``n`` valid rows: a fraction (< 1) of ``n`` (at least one) or a
    count (>= 1); ``duplicates`` (left out of ``n``) only explain an error."""
    k = max(1, round(n * size)) if size < 1 else int(size)
    if k >= n:
        left_out = f" ({duplicates} duplicate rows left out)" if duplicates else ""
        raise DuoError(f"data.test.size {size}: asks for {k} test rows but there are only {n} "
                       f"valid rows{left_out}; leave at least one for training")
    return k


def enough_rows(src: Source, valid: list[dict], bad: list[dict]) -> None:
    """Raise DuoError unless ``valid`` holds the two rows a split needs at the least,
    naming the first bad row."""
    if len(valid) >= 2:
        return
    first = next((b for b in bad if b["kind"] == "invalid"), None) or (bad[0] if bad else None)
    why = f"; first bad {src.unit} {first['line']}: {first['reason']}" if first else ""
    raise DuoError(f"{src.location}: only {len(valid)} valid row(s) out of {len(src.rows)}; "
                   f"need at least 2{why}")
