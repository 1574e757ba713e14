"""Teacher-data hygiene: which service answers are not worth training on (``data.hygiene``).

A coverage row (a logged call) or a synthetic pair is dropped, and counted by reason, when its service
answer is
- ``error``: the logged call failed (an ``error`` object, or a status code of 400 or more, instead of a
  reply);
- ``refusal``: the answer matches one of the refusal patterns (``refusals.txt``, or the file named by
  ``data.hygiene.refusal_patterns``) within its first ``WINDOW`` characters, or the provider's content
  filter stopped it (``finish_reason: content_filter``);
- ``truncated``: the reply was cut at the token limit (``finish_reason: length``, logged in
  ``choices[0]`` or in the row's own ``finish_reason``);
- ``empty``: the answer is empty or blank.

``screen`` looks at a raw source row (before it is parsed), ``refusal`` at an answer's text. Each
reason can be turned off; an empty answer then is a bad row again, as before hygiene.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import DuoError
from .chat_logs import is_chat_row

REASONS = ("refusal", "truncated", "empty", "error")
KIND = "dropped"  # a dropped row's ``kind`` in ``bad_rows.jsonl``; its reason is under ``hygiene``
WINDOW = 300  # characters of an answer a refusal pattern must match within
PACKAGED = Path(__file__).with_name("refusals.txt")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


@lru_cache(maxsize=8)
def _compiled(path: str) -> tuple[re.Pattern, ...]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DuoError(f"data.hygiene.refusal_patterns: cannot read {path} ({exc.strerror})") from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            out.append(re.compile(line.strip(), re.IGNORECASE))
        except re.error as exc:
            raise DuoError(f"{path}:{n}: not a valid regular expression ({exc}); "
                           "expected one pattern a line (data.hygiene.refusal_patterns)") from None
    return tuple(out)


def patterns(cfg: Config) -> tuple[re.Pattern, ...]:
    """The refusal patterns in use: the configured file's, else the packaged list."""
    own = cfg.data.hygiene.refusal_patterns
    return _compiled(str(cfg.resolve(own) if own else PACKAGED))


def refusal(text: object, cfg: Config) -> str | None:
    """The refusal phrase ``text`` opens with (within ``WINDOW`` characters), or None; always None
    when ``data.hygiene.refusals`` is off."""
    if not cfg.data.hygiene.refusals or not isinstance(text, str):
        return None
    head = text[:WINDOW].translate(_QUOTES)
    found = next((m for p in patterns(cfg) if (m := p.search(head))), None)
    return found.group(0).strip() if found else None


def _holders(data: dict) -> list[dict]:
    """The row and the logged reply in it (``response``, or a Batch API line's ``response.body``)."""
    out = [data]
    response = data.get("response")
    if isinstance(response, dict):
        out.append(response)
        if isinstance(response.get("body"), dict):
            out.append(response["body"])
    return out


def _choice(data: dict) -> dict | None:
    for holder in _holders(data):
        choices = holder.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            return choices[0]
    return None


def finish_reason(data: dict) -> str | None:
    """Why the logged reply stopped (``choices[0].finish_reason``, or the row's ``finish_reason``)."""
    choice = _choice(data)
    found = choice.get("finish_reason") if choice else None
    found = found or next((h.get("finish_reason") for h in _holders(data) if h.get("finish_reason")), None)
    return str(found).lower() if found else None


def _error(data: dict) -> str | None:
    """What the logged call failed with, or None."""
    for holder in _holders(data):
        error = holder.get("error")
        if error:
            text = error.get("message") or error.get("code") or error if isinstance(error, dict) else error
            return str(text)[:200]
        status = holder.get("status_code", holder.get("status"))
        if isinstance(status, int) and status >= 400:
            return f"status code {status}"
    return None


def _blank(content: Any) -> bool:
    if isinstance(content, list):  # content parts: blank when no part has text
        return all(not (isinstance(p, dict) and str(p.get("text") or "").strip()) for p in content)
    return content is None or (isinstance(content, str) and not content.strip())


def _empty_reply(data: dict, cfg: Config, chat_shaped: bool) -> str | None:
    """How the row's answer is empty (the reason shown in ``bad_rows.jsonl``), or None."""
    if not chat_shaped:
        col = cfg.data.columns.response
        if col in data and _blank(data[col]):
            return f"column '{col}' is empty"
        return None
    choice = _choice(data)
    if choice is not None:
        message = choice.get("message")
        calls = isinstance(message, dict) and (message.get("tool_calls") or message.get("function_call"))
        if isinstance(message, dict) and not calls and _blank(message.get("content")):
            return "the logged reply's message is empty"
        return None
    if "response" in data and _blank(data["response"]):
        return "the logged response is empty"
    turns = data.get("messages")
    if isinstance(turns, list) and turns and isinstance(last := turns[-1], dict) and \
            last.get("role") == "assistant" and not last.get("tool_calls") and _blank(last.get("content")):
        return f"message {len(turns)} (assistant) is empty"
    return None


def screen(data: Any, cfg: Config) -> tuple[str, str] | None:
    """(reason, what was found) when the raw row's service answer is an error, was stopped by the
    content filter, was cut or is empty (each as ``data.hygiene`` enables), else None."""
    if not isinstance(data, dict):
        return None
    h = cfg.data.hygiene
    chat_shaped = cfg.data.shape == "chat" or (cfg.data.shape == "auto" and is_chat_row(data))
    if h.errors and (error := _error(data)):
        return "error", f"the logged call failed: {error}"
    finish = finish_reason(data)
    if h.refusals and finish == "content_filter":
        return "refusal", "the provider's content filter stopped the reply (finish_reason: content_filter)"
    if h.truncated and finish == "length":
        return "truncated", "the reply was cut at the token limit (finish_reason: length)"
    if h.empty and (why := _empty_reply(data, cfg, chat_shaped)):
        return "empty", why
    return None


def for_pairs(cfg: Config) -> dict:
    """What ``pairs.Collector`` drops synthetic pairs by: refusals, replies cut at the token limit."""
    return {"refusal": lambda text: refusal(text, cfg), "drop_cut": cfg.data.hygiene.truncated}


def dropped(line: int, reason: str, why: str, row: Any) -> dict:
    """A dropped row as ``bad_rows.jsonl`` keeps it."""
    return {"line": line, "kind": KIND, "hygiene": reason, "reason": why, "row": row}


def counts(bad: list[dict]) -> dict[str, int]:
    """Rows dropped, by reason (every reason, 0 when none)."""
    found = Counter(b.get("hygiene") for b in bad if b.get("kind") == KIND)
    return {r: found.get(r, 0) for r in REASONS}


def settings(cfg: Config) -> dict:
    """What the manifest records of the filters: which are on, and the patterns' source."""
    h = cfg.data.hygiene
    return {"refusals": h.refusals, "truncated": h.truncated, "empty": h.empty, "errors": h.errors,
            "refusal_patterns": h.refusal_patterns or "packaged", "patterns": len(patterns(cfg))}
