"""The training set of a round: the coverage train split plus every synthetic set made up to
that round, each row as the prompt/completion pair TRL trains on, and how
``finetune.sft.max_length`` cuts them.

A row is ``prepare``'s record shape (``messages``: optional system turn, earlier turns, last user
turn, answer) or just ``instruction``/``response`` with an optional ``system`` field; both train
with the system prompt in the prompt.
"""

from __future__ import annotations

import json
import math

from ..artifacts.finetune import training_artifacts
from ..errors import DuoError
from ..records import read_jsonl
from ..store import Store
from .chat import prompt_messages
from .structured import template_kwargs


def training_rows(store: Store, round_no: int) -> list[dict]:
    """Rows (``id``, ``instruction``, ``response``, ``category``, ``messages``, ...) of
    ``prepare/train.jsonl`` followed by ``round-k/synthesize/data.jsonl`` for every existing k <=
    ``round_no``, in that order."""
    rows: list[dict] = []
    for name in training_artifacts(store, round_no):
        rows.extend(read_jsonl(store.open(name) / ("train.jsonl" if name == "prepare" else "data.jsonl")))
    return rows


# --------------------------------------------------------- rows as SFT examples, and their lengths

AUTO = "auto"  # finetune.sft.max_length: auto
AUTO_QUANTILE = 0.99
AUTO_BOUNDS = (128, 2048)


def _turn(message: dict) -> dict:
    # Extra keys (weight, name) would break Arrow.
    return {"role": message["role"], "content": message["content"]}


def prompt_completion(row: dict, where: str) -> dict:
    """A training row as a conversational ``prompt``/``completion`` pair, so the loss
    covers the final answer only.

    The prompt is every turn before the target: the system prompt (from ``messages`` or, for rows
    that carry it beside single-turn columns, the ``system`` field) and earlier turns, which the
    chat template renders but the loss skips. ``messages`` rows would train on the whole
    sequence: SmolLM2's template has no ``{% generation %}`` tags, so TRL's
    ``assistant_only_loss`` cannot mask the prompt.
    """
    messages = row.get("messages")
    if messages:
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m and "content" in m
                                                      for m in messages):
            raise DuoError(f"{where}: 'messages' must be a list of {{role, content}} objects")
        if messages[-1]["role"] != "assistant" or len(messages) < 2:
            raise DuoError(f"{where}: 'messages' must end with the assistant's answer "
                           "after at least one prompt turn")
        completion = messages[-1]
    else:
        instruction, response = row.get("instruction"), row.get("response")
        if not isinstance(instruction, str) or not instruction.strip() or not isinstance(response, str) \
                or not response.strip():
            raise DuoError(f"{where}: needs non-empty 'instruction' and 'response' (or 'messages')")
        completion = {"role": "assistant", "content": response}
    pair = {"prompt": [_turn(m) for m in prompt_messages(row)], "completion": [_turn(completion)]}
    if row.get("tools"):  # TRL renders a ``tools`` column with the chat template's tool support
        pair["tools"] = json.dumps(row["tools"], ensure_ascii=False)
    return pair


def same_columns(pairs: list[dict]) -> list[dict]:
    """``pairs`` with a ``tools`` entry on every one (None where a row had none) when any has tools: a
    dataset takes its columns from its first row."""
    if not any("tools" in p for p in pairs):
        return pairs
    return [{**p, "tools": p.get("tools")} for p in pairs]


def _ids(encoded) -> list:
    return encoded["input_ids"] if isinstance(encoded, dict) or hasattr(encoded, "keys") else encoded


def token_lengths(pairs: list[dict], tokenizer) -> list[tuple[int, int]]:
    """(prompt tokens, prompt + completion tokens) of each pair, tokenized as TRL
    does (the chat template)."""
    lengths = []
    for pair in pairs:
        extra = template_kwargs(pair)
        prompt = tokenizer.apply_chat_template(pair["prompt"], tokenize=True, add_generation_prompt=True, **extra)
        full = tokenizer.apply_chat_template(pair["prompt"] + pair["completion"], tokenize=True, **extra)
        lengths.append((len(_ids(prompt)), len(_ids(full))))
    return lengths


def auto_max_length(lengths: list[tuple[int, int]], model_limit: int | None = None) -> int:
    """``finetune.sft.max_length: auto``: the 99th percentile (nearest rank) of the rows' token
    lengths, rounded up to a multiple of 8, within ``AUTO_BOUNDS`` and the model's own limit."""
    full = sorted(f for _, f in lengths) or [0]
    value = full[max(0, math.ceil(AUTO_QUANTILE * len(full)) - 1)]
    value = -(-value // 8) * 8
    high = min(AUTO_BOUNDS[1], model_limit) if model_limit else AUTO_BOUNDS[1]
    return max(AUTO_BOUNDS[0], min(value, high))


def length_counts(pairs: list[dict], tokenizer, max_length: int | str | None,
                  lengths: list[tuple[int, int]] | None = None) -> dict:
    """How ``max_length`` cuts the training rows (``auto`` resolved first, see ``auto_max_length``):
    ``rows_dropped_too_long`` (the prompt alone fills it: no answer token is left, TRL drops the
    row) and ``rows_truncated`` (the answer loses its end), with the longest row in tokens and the
    rule that set the limit."""
    lengths = token_lengths(pairs, tokenizer) if lengths is None else lengths
    rules = {AUTO: f"auto: p{round(AUTO_QUANTILE * 100)} of {len(lengths)} rows", None: "none"}
    rule = rules.get(max_length, "fixed")
    if max_length == AUTO:
        limit = getattr(tokenizer, "model_max_length", None)
        max_length = auto_max_length(lengths, limit if isinstance(limit, int) and limit < 10**7 else None)
    cap = max_length or float("inf")
    dropped = sum(1 for p, _ in lengths if p >= cap)
    cut = sum(1 for p, f in lengths if p < cap < f)
    return {"max_length": max_length, "max_length_rule": rule, "rows_dropped_too_long": dropped,
            "rows_truncated": cut, "longest_tokens": max((f for _, f in lengths), default=0),
            "rows_used": len(pairs) - dropped}
