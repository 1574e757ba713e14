"""Chat turns of a record: the shape every stage shares (prepare and synthesize write it, infer and pull ask it)."""

from __future__ import annotations


def chat(instruction: str, response: str) -> list[dict]:
    """A single-turn exchange as chat ``messages``: the user's instruction, then the assistant's answer."""
    return [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]


def prompt_messages(row: dict) -> list[dict]:
    """The chat turns a row asks: its ``messages`` without the reference answer, else the instruction."""
    messages = row.get("messages")
    if isinstance(messages, list) and len(messages) >= 2 and messages[-1].get("role") == "assistant":
        return messages[:-1]
    return [{"role": "user", "content": row["instruction"]}]
