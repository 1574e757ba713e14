"""Rows of chat logs as records: OpenAI chat / fine-tuning JSONL and stored-completion exports.

Accepted row shapes (one JSON object per row):
- chat or fine-tuning JSONL: ``{"messages": [{"role", "content"}, ...]}``, the last
  turn the assistant's answer;
- a logged request with its reply: ``{"request": {"messages": [...]}, "response":
  <chat.completion>}`` (the reply may also be a message or its text), or the chat completion object
  itself with its input turns (``{"messages" | "input": [...], "choices": [{"message": ...}]}``, as
  a stored completion joined with ``GET /chat/completions/{id}/messages`` gives).

The target is the last assistant turn (the reply's message when the row has one); every earlier turn
is context, kept. ``developer`` turns (OpenAI's newer name) count as ``system``. A content given as
parts keeps its text parts.

Tool use: an assistant turn with ``tool_calls`` keeps them as its text, the JSON ``[{"name", "arguments"}]``
(``structured.tool_calls_text``; a final one is a tool-call target); a ``tool`` (or legacy ``function``) turn
is the result of the tool calls before it. The request's ``tools`` and ``response_format`` go with the record.
"""

from __future__ import annotations

from typing import Any

from .structured import tool_calls_text

ROLES = ("system", "user", "assistant", "tool")
ROLE_ALIASES = {"developer": "system", "function": "tool"}


def is_chat_row(data: Any) -> bool:
    """True when ``data`` looks like a chat-log row (it has turns or a completion's choices)."""
    if not isinstance(data, dict):
        return False
    return (
        "messages" in data
        or isinstance(data.get("choices"), list)
        or isinstance(data.get("request"), dict)
    )


def _reply(data: dict) -> Any:
    """The answer message of a logged completion (``choices[0].message``), or None when
    the row carries none."""
    response = data.get("response")
    holders = [data, response] if isinstance(response, dict) else [data]
    for holder in holders:
        choices = holder.get("choices")
        if isinstance(choices, list) and choices:
            first = choices[0]
            return first.get("message") if isinstance(first, dict) else first
    if isinstance(response, dict) and "role" in response:
        return response  # a response given as the message itself
    if isinstance(response, str):
        return {"role": "assistant", "content": response}  # a response logged as its text
    return None


def _turns(data: dict) -> tuple[list | None, str | None]:
    """The raw turns of a row (input turns plus the reply), or (None, why not)."""
    request = data.get("request") if isinstance(data.get("request"), dict) else data
    turns = request.get("messages", request.get("input"))
    if not isinstance(turns, list):
        where = "request.messages" if request is not data else "messages"
        found = type(turns).__name__ if turns is not None else "missing"
        return None, f"'{where}' is {found}; expected a list of turns"
    reply = _reply(data)
    return (turns + [reply] if reply is not None else list(turns)), None


def _text(content: Any, n: int, role: str) -> tuple[str | None, str | None]:
    """The text of one turn's content (a string, or a list of parts whose text parts are joined)."""
    if isinstance(content, list):
        texts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            if kind != "text" or not isinstance(part.get("text"), str):
                return None, (f"message {n} ({role}) has a '{kind}' content part; "
                              "only text parts are supported")
            texts.append(part["text"])
        content = "\n".join(texts)
    if content is None:
        return None, (f"message {n} ({role}) has no text content (a tool call?); "
                      "duo trains on text turns only")
    if not isinstance(content, str):
        return None, f"message {n} ({role}) content is {type(content).__name__}; expected a string"
    if not content.strip():
        return None, f"message {n} ({role}) is empty"
    return content.strip(), None


def _message(turn: Any, n: int) -> tuple[dict | None, str | None]:
    if not isinstance(turn, dict):
        return None, f"message {n} is {type(turn).__name__}; expected an object with 'role' and 'content'"
    role = ROLE_ALIASES.get(turn.get("role"), turn.get("role"))
    if role not in ROLES:
        return None, (f"message {n} has role {turn.get('role')!r}; "
                      "expected system, developer, user, assistant or tool")
    content = turn.get("content")
    calls = turn.get("tool_calls") or ([turn["function_call"]] if turn.get("function_call") else None)
    if role == "assistant" and calls:
        text, why = tool_calls_text(calls if isinstance(calls, list) else [calls])
        return (None, f"message {n} (assistant) {why}") if why else ({"role": role, "content": text}, None)
    text, why = _text(turn.get("content_parts") if content is None else content, n, role)
    return (None, why) if why else ({"role": role, "content": text}, None)


def _order_problem(messages: list[dict]) -> str | None:
    """Why the turns cannot be a training example (system first only, user before the
    final assistant turn)."""
    if not messages:
        return "the conversation has no turns"
    for n, m in enumerate(messages, 1):
        if m["role"] == "system" and n > 1:
            return (f"message {n} is a system turn after the conversation started; "
                    "put the system prompt first")
    if messages[-1]["role"] != "assistant":
        return (f"the conversation ends with a {messages[-1]['role']} turn; "
                "expected the assistant's answer last (the target to learn)")
    if messages[-2:-1] == [] or messages[-2]["role"] not in ("user", "tool"):
        return "no user turn (or tool result) right before the assistant's final answer"
    for n, m in enumerate(messages, 1):
        if m["role"] == "tool" and messages[n - 2]["role"] not in ("assistant", "tool"):
            return f"message {n} is a tool result with no assistant tool call before it"
    if not any(m["role"] == "user" for m in messages):
        return "the conversation has no user turn"
    return None


def _request_extras(data: dict) -> tuple[dict, str | None]:
    """``tools`` and ``response_format`` of the logged request (or the row), when present, or the reason
    they are not usable."""
    request = data.get("request") if isinstance(data.get("request"), dict) else data
    out: dict = {}
    tools = request.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            return {}, f"'tools' is {type(tools).__name__}; expected a list of tool definitions"
        if tools:
            out["tools"] = tools
    fmt = request.get("response_format")
    if fmt is not None:
        if not isinstance(fmt, dict) or not isinstance(fmt.get("type"), str):
            return {}, "'response_format' is not an object with a 'type'"
        if fmt["type"] != "text":
            out["response_format"] = fmt
    return out, None


def chat_record(data: Any) -> tuple[dict | None, str | None]:
    """``{system, messages, instruction, response}`` of a chat-log row, or (None, the
    reason it is not valid).

    ``messages`` is the whole conversation (system first when there is one; the last turn
    is the target), ``instruction`` the last user turn, ``response`` the target, ``system``
    the system prompt or None; ``tools`` and ``response_format`` when the request carried them.
    """
    if not isinstance(data, dict):
        return None, f"expected an object with 'messages', found {type(data).__name__}"
    turns, why = _turns(data)
    if why:
        return None, why
    messages = []
    for n, turn in enumerate(turns, 1):
        message, why = _message(turn, n)
        if why:
            return None, why
        messages.append(message)
    if why := _order_problem(messages):
        return None, why
    extras, why = _request_extras(data)
    if why:
        return None, why
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    instruction = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    return {"system": system, "messages": messages, "instruction": instruction,
            "response": messages[-1]["content"], **extras}, None
