"""Usage accounting: the tokens and cost of each item and of the whole engine, from the configured prices."""

from __future__ import annotations

import json
import math
from collections import deque

from ..manifest import zero_usage as _stage_usage
from .base import Completion

# fewer characters a token than English's ~4: a prompt's estimate errs on the dear side
CHARS_PER_TOKEN = 3
# LlamaDuo's max_tokens for synthesis: the limit sent with a request whose params set none
DEFAULT_MAX_OUTPUT_TOKENS = 2048
# the names a reply's token limit goes by in params (OpenAI's two, Gemini's)
LIMIT_NAMES = ("max_tokens", "max_completion_tokens", "max_output_tokens")
# the rate limiter's guess of a reply with no token limit before any reply came back
DEFAULT_OUTPUT_ESTIMATE = 512


def sent_params(service_params: dict | None, request_params: dict | None) -> dict:
    """The params a request is sent with: the service's, overridden by the request's own."""
    return {**(service_params or {}), **(request_params or {})}


def output_limit(params: dict) -> int | None:
    """The reply's token limit in ``params`` (any provider's name for it), or None."""
    limit = (params.get("max_tokens") or params.get("max_completion_tokens")
             or params.get("max_output_tokens"))
    return int(limit) if limit else None


def reply_limit(params: dict) -> int:
    """The token limit a request is sent with: its params' own, else ``DEFAULT_MAX_OUTPUT_TOKENS``."""
    return output_limit(params) or DEFAULT_MAX_OUTPUT_TOKENS


def with_reply_limit(params: dict | None, name: str) -> dict:
    """``params`` as sent: when they set no token limit, ``DEFAULT_MAX_OUTPUT_TOKENS`` under
    ``name`` (the provider's word for it), so a reply never costs more than its reservation
    assumed (``worst_case_tokens``). Providers add it at send time: the journal key is made from
    the params before it (``journal.keyed``), so answers journaled without it are still found."""
    sent = dict(params or {})
    if output_limit(sent) is None:
        for key in LIMIT_NAMES:  # a null or 0 limit is no limit: it makes way for the default
            sent.pop(key, None)
        sent[name] = DEFAULT_MAX_OUTPUT_TOKENS
    return sent


def prompt_tokens(messages: list, schema: dict | None) -> int:
    """An upper-ish count of a request's input tokens: the messages and schema at ``CHARS_PER_TOKEN``."""
    chars = sum(len(m.get("content") if isinstance(m.get("content"), str) else str(m.get("content") or ""))
                for m in messages) + (len(json.dumps(schema)) if schema else 0)
    return math.ceil(chars / CHARS_PER_TOKEN) + 4 * len(messages)


class OutputMean:
    """The output tokens of the replies so far: their running mean, and the longest recent one
    (``high``), what the rate limiter books for a reply with no token limit
    (``DEFAULT_OUTPUT_ESTIMATE`` until the first reply; each grant is corrected on its reply)."""

    KEPT = 50  # the replies ``high`` looks at

    def __init__(self, initial: int = DEFAULT_OUTPUT_ESTIMATE):
        self.initial = initial
        self.count = 0
        self.total = 0
        self._recent: deque[int] = deque(maxlen=self.KEPT)

    def observe(self, output_tokens: int) -> None:
        self.count += 1
        self.total += max(0, int(output_tokens))
        self._recent.append(max(0, int(output_tokens)))

    def value(self) -> int:
        return math.ceil(self.total / self.count) if self.count else self.initial

    def high(self) -> int:
        """The longest of the last ``KEPT`` replies (``initial`` before any): what the rate limiter books,
        so a window is not overrun by replies longer than the mean; ``settle`` gives back the rest as
        soon as the reply comes."""
        return max(self._recent) if self._recent else self.initial


class PromptGauge:
    """``prompt_tokens`` calibrated by the replies: the real input tokens of a prompt over its
    ``prompt_tokens`` count (at ``CHARS_PER_TOKEN``), the highest of the last ``KEPT`` replies, so the
    estimate errs on the dear side while it follows the service's tokenizer (1.0 before any reply)."""

    KEPT = 50

    def __init__(self):
        self._ratios: deque[float] = deque(maxlen=self.KEPT)
        self.ratio = 1.0

    def observe(self, counted: int, input_tokens: int) -> None:
        """One reply: ``counted``, the ``prompt_tokens`` of its prompt;
        ``input_tokens``, what the service counted."""
        if counted > 0 and input_tokens > 0:
            self._ratios.append(input_tokens / counted)
            self.ratio = max(self._ratios)

    def tokens(self, counted: int) -> int:
        return math.ceil(counted * self.ratio)


def estimate_tokens(messages: list, schema: dict | None, params: dict,
                    outputs: OutputMean | None = None, gauge: PromptGauge | None = None) -> int:
    """The tokens the rate limiter books for one request before its reply says how many it used: the
    prompt (calibrated by ``gauge``), plus the reply's token limit, else the longest of the recent
    replies (``outputs.high``)."""
    guess = outputs.high() if outputs is not None else DEFAULT_OUTPUT_ESTIMATE
    counted = prompt_tokens(messages, schema)
    return (gauge.tokens(counted) if gauge is not None else counted) + (output_limit(params) or guess)


def worst_case_tokens(messages: list, schema: dict | None, params: dict) -> tuple[int, int]:
    """(input, output) tokens one send may use: ``prompt_tokens`` plus the token limit it is sent
    with (``reply_limit``: ``DEFAULT_MAX_OUTPUT_TOKENS`` when params set none)."""
    return prompt_tokens(messages, schema), reply_limit(params)


def zero_usage() -> dict:
    """The usage of an item that cost nothing (yet): a stage's usage without the ``cached`` count."""
    usage = _stage_usage()
    usage.pop("cached")
    return usage


class UsageMeter:
    """Adds each reply's tokens and cost to its item's usage and to ``totals``
    (which also counts cached items).

    Args:
        price_input_per_1m, price_output_per_1m: USD per million input and output tokens.
    """

    def __init__(self, price_input_per_1m: float, price_output_per_1m: float):
        self.price_input_per_1m = price_input_per_1m
        self.price_output_per_1m = price_output_per_1m
        self.totals = _stage_usage()

    def account(self, usage: dict, completion: Completion, discount: float = 1.0) -> None:
        """Count one reply in ``usage`` and in the totals, its cost times ``discount`` (a batch's 0.5)."""
        cost = discount * (completion.input_tokens * self.price_input_per_1m
                           + completion.output_tokens * self.price_output_per_1m) / 1e6
        for target in (usage, self.totals):
            target["requests"] += 1
            target["input_tokens"] += completion.input_tokens
            target["output_tokens"] += completion.output_tokens
            target["cost_usd"] += cost

    def cached(self) -> None:
        """Count one item answered without a request (from the journal, or the same question in this run)."""
        self.totals["cached"] += 1
