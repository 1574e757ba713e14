"""Money spent on service LLMs: the store's ledger, and a guard that stops asking before the budget is passed.

The ledger is the sum of ``usage.cost_usd`` over every manifest in the store. Answers re-used from the journal
cost nothing (the engine reports zeros for them); a stage that replaces its artifact carries the replaced
manifest's cost forward (``carried_cost_usd``), so money once spent never drops out of the ledger.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from .config import Config, ServiceLLMConfig
from .store import Store

DEFAULT_MAX_OUTPUT_TOKENS = 2048  # LlamaDuo's max_tokens for synthesis; an upper bound before any reply is seen


def spent_in_store(store: Store, exclude: str | None = None) -> float:
    """Sum of ``usage.cost_usd`` over the store's manifests (leaving out artifact ``exclude``)."""
    total = 0.0
    for name in store.list():
        if name != exclude:
            total += float((store.manifest(name).usage or {}).get("cost_usd") or 0.0)
    return total


def request_cost(svc: ServiceLLMConfig, input_tokens: float, output_tokens: float) -> float:
    return (input_tokens * svc.price_input_per_1m + output_tokens * svc.price_output_per_1m) / 1e6


class Spend:
    """Tracks the cost of one stage's answers and cuts its requests into chunks that fit the budget.

    Before a chunk is sent, its cost is estimated from the mean cost per answer so far (before the first answer:
    the prompt's length in tokens, about 4 characters each, plus the reply's token limit; after: the dearest
    answer so far). Requests that would pass ``budget.max_spend_usd`` are not sent, and ``stopped`` is set.
    """

    def __init__(self, cfg: Config, svc: ServiceLLMConfig, before: float, carried: float = 0.0,
                 chunk_size: int | None = None):
        self.svc = svc
        self.limit = cfg.budget.max_spend_usd
        self.before = before
        self.carried = carried
        self.chunk_size = chunk_size or max(8, 4 * svc.concurrency)
        self.requests = self.cached = self.input_tokens = self.output_tokens = 0
        self.cost = self.max_cost = 0.0
        self.paid = 0
        self.stopped = False

    def _estimate(self, request) -> float:
        if self.paid:
            return self.max_cost  # the dearest answer so far: a mean would let the next chunk overshoot
        params = {**(self.svc.params or {}), **(getattr(request, "params", None) or {})}
        out = params.get("max_tokens") or params.get("max_completion_tokens") or DEFAULT_MAX_OUTPUT_TOKENS
        chars = sum(len(str(m.get("content", ""))) for m in request.messages)
        return request_cost(self.svc, chars / 4, out)

    def chunks(self, planned: list) -> Iterator[list]:
        """Yield slices of ``planned`` ((Request, ...) tuples) while the budget allows the next request."""
        start = 0
        while start < len(planned):
            chunk = planned[start:start + self.chunk_size]
            per_request = self._estimate(chunk[0][0])
            if per_request > 0:
                remaining = self.limit - self.before - self.cost
                chunk = chunk[:max(0, math.floor(remaining / per_request + 1e-9))]
                if not chunk:
                    self.stopped = True
                    return
            yield chunk
            start += len(chunk)

    def add(self, result) -> None:
        """Count one Result (its usage covers every try the engine made for it; zeros when re-used)."""
        usage = result.usage or {}
        tin, tout = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
        cost = usage.get("cost_usd")
        cost = float(cost) if cost is not None else request_cost(self.svc, tin, tout)
        self.requests += 1
        self.input_tokens += tin
        self.output_tokens += tout
        self.cost += cost
        if result.cached:
            self.cached += 1
        else:
            self.paid += 1
            self.max_cost = max(self.max_cost, cost)

    def usage(self) -> dict:
        """The manifest's ``usage``: ``cost_usd`` = this run's new spend plus the replaced artifact's."""
        return {"requests": self.requests, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cost_usd": round(self.carried + self.cost, 8), "cached": self.cached,
                "new_cost_usd": round(self.cost, 8), "carried_cost_usd": round(self.carried, 8)}
