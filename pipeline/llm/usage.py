"""Usage accounting: the tokens and cost of each item and of the whole engine, from the configured prices."""

from __future__ import annotations

from ..manifest import zero_usage as _stage_usage
from .base import Completion


def zero_usage() -> dict:
    """The usage of an item that cost nothing (yet): a stage's usage without the ``cached`` count."""
    usage = _stage_usage()
    usage.pop("cached")
    return usage


class UsageMeter:
    """Adds each reply's tokens and cost to its item's usage and to ``totals`` (which also counts cached items).

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
