"""Cleaning a synthesis round's replies: each reply's pairs, in request order, are kept (up to the
target) or removed with a reason, and a reply without pairs is a failure that keeps its raw text.

Removal reasons: ``refusal`` (the response is a refusal, ``hygiene.refusal``; not checked in a reply
cut at the token limit, whose pairs are ``truncated``), then ``dedup.PairFilter``'s (empty, truncated,
test_overlap, duplicate, near_duplicate), then ``semantic_contaminated`` (``decontam_semantic``: the
instruction means what a test prompt means) and ``length_outlier`` (the response is outside the
seeds' length range, ``seeds.length_band``), then ``surplus`` (a good pair beyond the target). A kept
row carries its seed's system prompt as ``system`` and in ``messages``.
"""

from __future__ import annotations

import math
from collections import Counter

from ..llm.replies import CUT  # how a failure says its reply was cut (replies.check_reply)
from . import decontam_semantic, seeds
from .dedup import PairFilter

MIN_YIELD = 0.2  # never plan on fewer than 1 kept pair in 5 received when sizing a re-ask
EXTRA_REASONS = (decontam_semantic.REASON, "length_outlier", "refusal")


def pairs_of(result) -> list | None:
    """The ``contents`` list of a reply, or None when the reply does not have that shape."""
    data = result.data
    if isinstance(data, dict) and isinstance(data.get("contents"), list):
        return data["contents"]
    return None


def _instructions(result) -> list[str] | None:
    """The instruction of each pair of a reply ("" where it is not a string), or None for a failed reply."""
    pairs = pairs_of(result) if result.ok else None
    if pairs is None:
        return None
    return [p.get("instruction") if isinstance(p, dict) and isinstance(p.get("instruction"), str) else ""
            for p in pairs]


class Collector:
    """Cleans each reply's pairs in request order and keeps up to ``target`` of them."""

    def __init__(self, round_no: int, target: int, pair_filter: PairFilter, generator: str, *,
                 semantic: decontam_semantic.SemanticFilter | None = None, band: dict | None = None,
                 refusal=None, drop_cut: bool = True, rules=None):
        self.round_no, self.target, self.filter, self.generator = round_no, target, pair_filter, generator
        self.rules = rules  # a structured task's rules (structured_pairs.PairRules): what a response must be
        # data.hygiene: refusal(text) -> the refusal phrase or None; drop_cut: drop replies cut by max tokens
        self.refusal, self.drop_cut = refusal, drop_cut
        self.semantic, self.allowed = semantic, band["allowed"] if band and band["filter"] else None
        if rules is not None and not rules.length_filtered:
            self.allowed = None
        self.kept: list[dict] = []
        self.removed: list[dict] = []
        self.failures: list[dict] = []
        self.received = 0
        self.seed_mix: Counter = Counter()

    def _shape(self, pairs: list, j: int, close: list) -> tuple[str | None, dict]:
        """Pair ``j``'s removal beyond ``PairFilter``: too close in meaning to a test
        prompt, or too long/short."""
        if close[j] is not None:
            return decontam_semantic.REASON, close[j]
        length = len(str(pairs[j].get("response") or "").strip())
        if self.allowed and not self.allowed[0] <= length <= self.allowed[1]:
            return "length_outlier", {"length": length, "allowed": self.allowed}
        return None, {}

    def add_all(self, replies: list[tuple]) -> None:
        """``add`` each (result, seed row) in order, with the semantic check of all their instructions
        made in one batched call (the same verdicts as one call per reply: each instruction's embedding is
        its own)."""
        texts = [_instructions(r) for r, _ in replies]
        close = iter(self.semantic.check([t for ts in texts if ts for t in ts]) if self.semantic else ())
        for (result, seed_row), ts in zip(replies, texts):
            mine = [next(close) for _ in ts] if ts is not None and self.semantic else None
            self.add(result, seed_row, close=mine)

    def add(self, result, seed_row: dict, *, close: list | None = None) -> None:
        """Clean one reply's pairs; ``close``: the semantic check of its instructions when made already."""
        self.seed_mix[str(seed_row.get("category"))] += 1
        texts = _instructions(result)
        if texts is None:
            error = result.error or "reply has no 'contents' list of pairs"
            self.failures.append({"key": result.key, "error": error, "raw": result.raw})
            return
        cut = self.drop_cut and getattr(result, "finish_reason", None) == "length"
        pairs = [p if isinstance(p, dict) else {} for p in pairs_of(result)]
        if close is None:
            close = self.semantic.check(texts) if self.semantic else [None] * len(pairs)
        system = seeds.system_of(seed_row)
        for j, pair in enumerate(pairs):
            self.received += 1
            instruction, response = pair.get("instruction"), pair.get("response")
            # a structured task's response as its target text, or as given with why it is invalid
            response, invalid, why = (self.rules.target(response, seed_row) if self.rules
                                      else (response, None, {}))
            pairs[j] = {**pair, "response": response}
            base = {"instruction": instruction, "response": response, "category": seed_row.get("category"),
                    "seed_id": seed_row["id"], "round": self.round_no, "request": f"{result.key}/{j}"}
            said = self.refusal(response) if self.refusal and not cut else None  # a cut reply is truncated
            reason, info = ("refusal", {"refusal": said}) if said else \
                self.filter.check(instruction, response, cut=cut)
            if reason is None and invalid:
                reason, info = invalid, why
            if reason is None:
                reason, info = self._shape(pairs, j, close)
            if reason is None and len(self.kept) >= self.target:
                reason = "surplus"
            if reason:
                self.removed.append({**base, "reason": reason, **info})
                continue
            row_id = f"syn-r{self.round_no}-{len(self.kept) + 1:06d}"
            instruction, response = instruction.strip(), response.strip()
            turns = [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]
            self.kept.append({
                "id": row_id,
                "instruction": instruction,
                "response": response,
                "system": system,
                "category": seed_row.get("category"),
                "messages": ([{"role": "system", "content": system}] if system else []) + turns,
                "seed_id": seed_row["id"],
                "generator": self.generator,
                "round": self.round_no,
                **(self.rules.carried(seed_row) if self.rules else {}),  # the seed's tools, response_format
            })
            self.filter.keep(row_id, instruction)

    def hygiene(self) -> dict[str, int]:
        """Pairs and replies dropped as ``data.hygiene`` counts them: refusals, replies cut at the token
        limit (their pairs removed, or the reply unreadable), empty responses, failed replies."""
        removed = Counter(r["reason"] for r in self.removed)
        cut_pairs = sum(1 for r in self.removed if r.get("cut_by_token_limit"))
        cut, refused = (sum(1 for f in self.failures if word in str(f.get("error")))
                        for word in (CUT, "refusal:"))
        return {"refusal": removed["refusal"] + refused, "truncated": cut_pairs + cut,
                "empty": removed["empty"], "error": len(self.failures) - cut - refused}

    def requests_needed(self, pairs_per_request: int) -> int:
        """How many requests the next attempt sends, sized by the yield seen so far."""
        need = self.target - len(self.kept)
        if need <= 0:
            return 0
        seen = self.received
        rate = max(MIN_YIELD, len(self.kept) / seen) if seen else 1.0
        return math.ceil(need / (pairs_per_request * rate))


class Cleaner:
    """A ``Collector`` fed on a worker thread: a chunk's replies are cleaned (their instructions embedded
    in one batched call, torch freeing the GIL) while the next chunk is in flight (issue 24).

    Chunks are cleaned one at a time, in order, so the rows, their order and their reasons are those of
    cleaning each chunk as it arrives. The next chunk goes out before the last one is cleaned only when
    that cleaning cannot reach the target (kept so far plus the pairs it holds stay below it): no request
    is sent that a serial loop would not send.
    """

    def __init__(self, collector: Collector):
        from concurrent.futures import ThreadPoolExecutor

        self.collector = collector
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duo-clean")
        self._pending = None
        self._bound = 0  # the most rows the collector can hold once the pending cleaning is done

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True)

    def wait(self) -> None:
        """Until every chunk handed over is cleaned (re-raising what the cleaning raised)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def reached(self) -> bool:
        """Whether the collector holds its target; waits for the pending cleaning only when it might."""
        if self._pending is not None and self._bound >= self.collector.target:
            self.wait()
        return self._pending is None and len(self.collector.kept) >= self.collector.target

    def submit(self, replies: list[tuple]) -> None:
        """Clean ``replies`` ((result, seed row) in request order) after the chunks before them."""
        self.wait()
        received = sum(len(pairs_of(result) or []) for result, _ in replies if result.ok)
        self._bound = len(self.collector.kept) + received
        self._pending = self._pool.submit(self.collector.add_all, replies)
