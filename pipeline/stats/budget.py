"""Money spent on service LLMs: the store's ledger,
and a guard that stops asking before the budget is passed.

The ledger is the sum of ``usage.cost_usd`` over every manifest in the store. Answers re-used from
the journal cost nothing (the engine reports zeros for them); a stage that replaces its artifact
carries the replaced manifest's cost forward (``carried_cost_usd``), so money once spent never drops
out of the ledger.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from ..config import Config, ServiceLLMConfig
from ..llm.concurrency import in_flight_cap
from ..llm.usage import (
    CHARS_PER_TOKEN,
    DEFAULT_MAX_OUTPUT_TOKENS,
    output_limit,
    sent_params,
    worst_case_tokens,
)
from ..prices import price_of
from ..store import Store, round_of


def spent_in_store(store: Store, exclude: str | None = None, up_to_round: int | None = None) -> float:
    """The ledger: money paid to service LLMs for the task, leaving out artifact ``exclude``
    (``round-N/<stage>``) and, with ``up_to_round``, every round after it (what had been spent when
    that round was decided).

    Per artifact, the spend its journal records (every reply that arrived, every attempt, every run,
    before and after crashes: ``llm.journal.sync.store_ledger``), or its manifest's
    ``usage.cost_usd`` where that is more (an artifact with no journal, or one written before the
    journal kept the ledger). A request whose reply never arrived counts at its worst case (unknown,
    at most: the service may have billed it), as the stage's manifest books it, so the cap never
    starts from less than may have been spent.
    """
    from ..llm.journal.sync import store_ledger

    spent = {name: ledger.cost_usd + ledger.unknown_at_most_usd
             for name, ledger in store_ledger(store).items()}
    for name in store.list():
        spent[name] = max(spent.get(name, 0.0),
                          float((store.manifest(name).usage or {}).get("cost_usd") or 0.0))
    later = {name for name in spent if up_to_round is not None and (round_of(name) or 0) > up_to_round}
    return sum(cost for name, cost in spent.items() if name != exclude and name not in later)


def request_cost(svc: ServiceLLMConfig, input_tokens: float, output_tokens: float) -> float:
    """USD of ``input_tokens`` and ``output_tokens`` at ``svc``'s price (``prices.price_of``)."""
    price_in, price_out = price_of(svc)
    return (input_tokens * price_in + output_tokens * price_out) / 1e6


def not_sent(result) -> bool:
    """True for a Result the spend budget kept from being sent
    (the engine's ``error="budget"``, no attempt)."""
    return not result.ok and result.error == "budget" and not result.attempts


class Spend:
    """Tracks the cost of one stage's answers and keeps the stage's spend under ``budget.max_spend_usd``.

    Two guards. The hard one: the engine (``Engine(..., spend=spend)``) ``reserve``s each send's
    worst-case cost (prompt tokens + the reply's token limit, which every request carries:
    ``usage.reply_limit``) before sending and ``settle``s it with
    the real cost when the reply arrives, so requests in flight together can never take the spend
    past the cap; a send that does not fit is not made (its Result has ``error="budget"``, see
    ``not_sent``) and ``stopped`` is set. A send whose reply never came (a timeout) keeps its
    reservation, as ``unknown``: it may have been charged. The soft one: ``chunks`` cuts a stage's
    requests into chunks that the estimate says fit (before the first answer: the worst case; after:
    the dearest answer so far), so a stage stops asking early instead of being refused request by
    request. Thread-safe: judges and engines on worker threads may share one Spend.
    """

    def __init__(self, cfg: Config, svc: ServiceLLMConfig, before: float, carried: float = 0.0,
                 chunk_size: int | None = None, *, limit: float | None = None):
        self.svc = svc
        self.limit = cfg.budget.max_spend_usd if limit is None else limit
        self.before = before
        self.carried = carried
        # a chunk must never starve the engine
        self.chunk_size = chunk_size or max(8, 4 * in_flight_cap(svc))
        self.requests = self.cached = self.input_tokens = self.output_tokens = 0
        self.cost = self.max_cost = 0.0
        self.paid = 0
        self.stopped = False
        self.reserved = 0.0  # worst-case cost of the sends in flight
        self.settled = 0.0  # real cost of the replies the engine has had this run
        self.unknown = 0.0  # worst-case cost of sends whose reply never came
        self.refused = 0  # sends the cap did not allow
        self.in_flight = 0  # sends holding a reservation
        self._lock = threading.Lock()

    # -- the hard cap (the engine calls these around every send) ----------------------------------
    def worst_case(self, messages: list, schema: dict | None = None, params: dict | None = None) -> float:
        """USD one send of ``messages`` may cost at most (see ``worst_case_tokens``)."""
        params = sent_params(self.svc.params, params)
        return request_cost(self.svc, *worst_case_tokens(messages, schema, params))

    def left(self) -> float:
        """USD the cap still allows, after what was spent,
        is reserved in flight and may have been charged."""
        return self.limit - self.before - max(self.cost, self.settled) - self.reserved - self.unknown

    def reserve(self, messages: list, schema: dict | None = None, params: dict | None = None, *,
                discount: float = 1.0) -> float | None:
        """Hold the worst-case cost of one send; the USD held,
        or None (and ``stopped``) when it does not fit."""
        cost = discount * self.worst_case(messages, schema, params)
        with self._lock:
            return self._take(cost, wait=False)

    async def areserve(self, messages: list, schema: dict | None = None, params: dict | None = None, *,
                       poll_s: float = 0.02) -> float | None:
        """``reserve``, but while other sends are in flight (each may settle below its worst case
        and free room) it waits for them; it refuses only when the send does not fit with nothing in
        flight."""
        cost = self.worst_case(messages, schema, params)
        while True:
            with self._lock:
                held = self._take(cost, wait=True)
            if held != -1.0:
                return held
            await asyncio.sleep(poll_s)

    def _take(self, cost: float, wait: bool) -> float | None:
        """Reserve ``cost`` (held under the lock): the USD held;
        None: refused; -1.0: wait for sends in flight."""
        if cost > 0 and cost > self.left() + 1e-12:
            if wait and self.in_flight:
                return -1.0
            self.stopped = True
            self.refused += 1
            return None
        self.reserved += cost
        self.in_flight += 1
        return cost

    def settle(self, held: float, cost: float | None) -> None:
        """Release a reservation of ``held`` USD: the send cost ``cost``
        (0: not charged; None: unknown, so the worst case stays counted against the cap)."""
        with self._lock:
            self.reserved -= held
            self.in_flight -= 1
            if cost is None:
                self.unknown += held
            else:
                self.settled += cost

    # -- the soft guard: chunks that the estimate says fit ----------------------------------------
    def _estimate(self, request) -> float:
        if self.paid:
            return self.max_cost  # the dearest answer so far: a mean would let the next chunk overshoot
        return self.worst_case(request.messages, None, getattr(request, "params", None))

    def chunks(self, planned: list) -> Iterator[list]:
        """Yield slices of ``planned`` ((Request, ...) tuples) while the budget allows the next request."""
        start = 0
        while start < len(planned):
            chunk = planned[start:start + self.chunk_size]
            per_request = self._estimate(chunk[0][0])
            if per_request > 0:
                chunk = chunk[:max(0, math.floor(self.left() / per_request + 1e-9))]
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
        with self._lock:
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
        out = {
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.carried + self.cost, 8),
            "cached": self.cached,
            "new_cost_usd": round(self.cost, 8),
            "carried_cost_usd": round(self.carried, 8),
        }
        if self.unknown:
            out["unknown_at_most_usd"] = round(self.unknown, 8)
        return out


@dataclass
class PlanPart:
    """What one service would be sent by a stage (``--plan``): nothing is sent to make it.

    Attributes:
        label: what the requests are for (``synthesize``, ``judge openai:gpt-4o``, ``pairwise judge ...``).
        svc: the ``ServiceLLMConfig`` that would answer.
        requests: every request the stage would make; answered: how many of them the journal already holds.
        input_tokens, output_tokens, cost_usd: at most,
            for the requests not in the journal (``worst_case_tokens``).
        first: the first request (its ``messages`` are shown).
    """

    label: str
    svc: ServiceLLMConfig
    requests: int
    answered: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    first: object | None

    @classmethod
    def of(cls, label: str, svc: ServiceLLMConfig, requests: list, answered: list[bool]) -> PlanPart:
        tin = tout = 0
        for req, done in zip(requests, answered):
            if not done:
                i, o = worst_case_tokens(req.messages, req.schema, sent_params(svc.params, req.params))
                tin, tout = tin + i, tout + o
        return cls(label, svc, len(requests), sum(answered), tin, tout, request_cost(svc, tin, tout),
                   requests[0] if requests else None)

    def lines(self) -> list[str]:
        from ..prices import price_text

        limit = output_limit(self.svc.params or {})
        reply = (f"max_tokens {limit}" if limit
                 else f"no max_tokens set: {DEFAULT_MAX_OUTPUT_TOKENS}, the limit sent")
        out = [(f"{self.label}: {self.requests} requests to {self.svc.provider}:{self.svc.model}, "
                f"{self.answered} already answered in the journal (free), "
                f"{self.requests - self.answered} to send"),
               (f"  tokens, at most: input {self.input_tokens:,}, output {self.output_tokens:,} "
                f"(prompt at {CHARS_PER_TOKEN} characters a token; each reply at {reply})"),
               f"  cost, at most: ${self.cost_usd:.4f} at {price_text(self.svc)}"]
        if self.first is not None:
            out.append(f"  first request ({self.first.key}):")
            for m in self.first.messages:
                text = str(m.get("content") or "").replace("\n", "\n      ")
                out.append(f"    [{m.get('role')}] {text}")
        return out


def plan_text(title: str, parts: list[PlanPart], cfg: Config, spent: float,
              notes: tuple[str, ...] = ()) -> str:
    """A stage's plan for the terminal: each part, then the total against the budget."""
    lines = [f"{title} (plan: nothing is sent, nothing is written)", *notes]
    for part in parts:
        lines += part.lines()
    cost = sum(p.cost_usd for p in parts)
    sends = sum(p.requests - p.answered for p in parts)
    left = cfg.budget.max_spend_usd - spent
    lines.append(f"total: {sends} requests to send, at most ${cost:.4f}; "
                 f"spent so far ${spent:.4f} "
                 f"of budget.max_spend_usd=${cfg.budget.max_spend_usd:.2f} "
                 f"(${max(0.0, left):.4f} left)"
                 + ("; the cap would stop it short" if cost > left else ""))
    return "\n".join(lines)
