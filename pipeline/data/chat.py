"""Chat turns of a record: the shape every stage shares (prepare and synthesize write it; finetune,
infer, the judges and pull read it).

A record's ``messages`` is the whole conversation: an optional system turn first, earlier turns
(context), the last user turn (``instruction``) and the assistant's answer (``response``, the
target). ``system`` repeats the system prompt (or is None) for the stages that read columns.
"""

from __future__ import annotations


def chat(instruction: str, response: str, system: str | None = None) -> list[dict]:
    """A single-turn exchange as chat ``messages``: the system prompt when given, the user's
    instruction, then the assistant's answer."""
    head = [{"role": "system", "content": system}] if system else []
    return [*head, {"role": "user", "content": instruction}, {"role": "assistant", "content": response}]


def _leading_system(messages: list[dict]) -> str | None:
    return messages[0]["content"] if messages and messages[0].get("role") == "system" else None


def prompt_messages(row: dict) -> list[dict]:
    """The chat turns a row asks: its ``messages`` without the reference answer, else its earlier
    turns (``context``, as ``infer``'s answers record them) and the instruction (after the row's
    ``system`` prompt when it has one). A ``system`` field the turns lack is put first."""
    messages = row.get("messages")
    if isinstance(messages, list) and len(messages) >= 2 and messages[-1].get("role") == "assistant":
        turns = list(messages[:-1])
    else:
        turns = [*(row.get("context") or []), {"role": "user", "content": row["instruction"]}]
    system = row.get("system")
    if system and _leading_system(turns) is None:
        turns.insert(0, {"role": "system", "content": system})
    return turns


def system_and_context(row: dict) -> tuple[str | None, list[dict]]:
    """(system prompt or None, the turns before the last user turn) a row was asked with:
    from its ``system`` and ``context`` fields when it has them (``infer``'s answers), else
    from its ``messages``."""
    if "context" in row:
        return row.get("system") or None, list(row.get("context") or [])
    turns = prompt_messages(row)
    system = _leading_system(turns)
    return system, turns[1 if system is not None else 0:-1]


def asked_fields(row: dict) -> dict:
    """``{"system", "context"}`` of a row (see ``system_and_context``): what ``infer`` records
    beside each answer, so the judges see the question as the student saw it."""
    system, context = system_and_context(row)
    return {"system": system, "context": context}
