"""The engine: asks a service LLM many things at once and gives back one Result per Request, in order.

It adds to a provider: bounded concurrency, request and token rate limits, retries with exponential backoff and
jitter (honouring Retry-After), schema validation with bounded re-asking, a journal of answers (a rerun pays
nothing for what it already has), usage and cost. One bad item becomes a failed Result; only a FatalError
(bad key, unknown model, missing key) stops the run, and everything answered before it is in the journal.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from .base import FatalError, Request, RequestError, Result, RetryableError
from .journal import Journal, journal_key
from .limiter import RateLimiter

REASK = (Path(__file__).parent / "reask_schema.txt").read_text()
FENCE = re.compile(r"^\s*```(?:json)?\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
DEFAULT_OUTPUT_ESTIMATE = 512


class _GaveUp(Exception):
    """Retries exhausted for one item."""


def parse_reply(text: str, schema: dict) -> tuple[object, str | None]:
    """(data, None) when ``text`` is JSON valid against ``schema``, else (None or data, what is wrong)."""
    import jsonschema

    m = FENCE.match(text)
    try:
        data = json.loads(m.group(1) if m else text)
    except ValueError as e:
        return None, f"not valid JSON ({e})"
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return data, f"at {where}: {error.message}"
    return data, None


def estimate_tokens(messages: list, schema: dict | None, params: dict) -> int:
    """An upper-ish bound of the tokens one request uses (about 3 characters a token, plus the reply limit)."""
    chars = sum(len(m.get("content") or "") for m in messages) + (len(json.dumps(schema)) if schema else 0)
    limit = params.get("max_tokens") or params.get("max_completion_tokens") or params.get("max_output_tokens")
    return math.ceil(chars / 3) + int(limit or DEFAULT_OUTPUT_ESTIMATE)


class Engine:
    """Runs Requests against the configured service LLM.

    Args:
        service_cfg: a ``ServiceLLMConfig`` (provider, model, rpm, tpm, concurrency, prices, params, retries).
        journal: JSONL file of answers to reuse and extend; None keeps nothing.
        provider: a ready provider (tests, other backends); default: built from the config on first need.
        period: seconds of the rate-limit window (60; tests shorten it).
        backoff_base, backoff_cap: seconds of the first retry delay and the most any delay grows to.
        progress: show a tqdm bar on stderr.
        batch: send uncached items through the OpenAI Batch API first (half price; slow), see openai_batch.py.
        batch_poll_s: seconds between polls of a batch.
    """

    def __init__(self, service_cfg, journal: Path | str | None = None, provider=None, *, period: float = 60.0,
                 backoff_base: float = 1.0, backoff_cap: float = 60.0, progress: bool = True, batch: bool = False,
                 batch_poll_s: float = 30.0):
        self.cfg = service_cfg
        self.journal = Journal(journal) if journal is not None else None
        self._provider = provider
        self.limiter = RateLimiter(service_cfg.rpm, service_cfg.tpm, period=period)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.progress = progress
        self.batch = batch
        self.batch_poll_s = batch_poll_s
        self.usage = {"requests": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "cached": 0}
        self._fatal: FatalError | None = None

    # -- public ----------------------------------------------------------------------------------------------
    def run(self, requests: list[Request], desc: str = "service LLM") -> list[Result]:
        """Synchronous ``arun``; works inside a running event loop too (it then runs in a worker thread)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.arun(requests, desc))
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, self.arun(requests, desc)).result()

    async def arun(self, requests: list[Request], desc: str = "service LLM") -> list[Result]:
        from tqdm import tqdm

        requests = list(requests)
        results: list[Result | None] = [None] * len(requests)
        todo: list[tuple[int, Request, dict, str]] = []
        for i, req in enumerate(requests):
            params = {**(self.cfg.params or {}), **(req.params or {})}
            key = journal_key(self.cfg.provider, self.cfg.model, params, req.messages, req.schema, req.repeat)
            hit = self.journal.get(key) if self.journal is not None else None
            if hit is not None:
                results[i] = Result(key=req.key, ok=True, data=hit.get("data"), raw=hit.get("text"), cached=True,
                                    usage=self._zero(), repeat=req.repeat, finish_reason=hit.get("finish_reason"))
                self.usage["cached"] += 1
            else:
                todo.append((i, req, params, key))
        bar = tqdm(total=len(requests), initial=len(requests) - len(todo), desc=desc, unit="req", file=sys.stderr,
                   disable=not self.progress, mininterval=0.5)
        if not todo:
            bar.close()
            return results
        provider = self._provider
        owned = provider is None
        if owned:
            from . import create_provider

            provider = create_provider(self.cfg)
        self._fatal = None
        try:
            if self.batch:
                todo = await self._batch(provider, todo, results, bar)
        except BaseException:
            bar.close()
            if owned:
                await provider.aclose()
            raise
        sem = asyncio.Semaphore(self.cfg.concurrency)
        inflight: dict[str, asyncio.Future] = {}

        async def one(i: int, req: Request, params: dict, key: str, prior: tuple | None = None) -> None:
            if key in inflight:  # the same question twice in one run is asked once
                first = await asyncio.shield(inflight[key])
                results[i] = replace(first, key=req.key, cached=first.ok, attempts=0, usage=self._zero())
                if first.ok:
                    self.usage["cached"] += 1
            else:
                inflight[key] = asyncio.get_running_loop().create_future()
                async with sem:
                    res = await self._item(provider, req, params, key, prior)
                inflight[key].set_result(res)
                results[i] = res
            bar.update(1)

        tasks = [asyncio.ensure_future(one(*item)) for item in todo]
        try:
            # the batch may have answered everything: asyncio.wait refuses an empty set
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION) if tasks else (set(), set())
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            errors = [task.exception() for task in done if not task.cancelled()]  # retrieve all: no asyncio noise
            fatal = next((e for e in errors if e is not None), None)
            if fatal is not None:
                raise fatal
        finally:
            bar.close()
            if owned:
                await provider.aclose()
        return results

    # -- one item --------------------------------------------------------------------------------------------
    @staticmethod
    def _zero() -> dict:
        return {"requests": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}

    def _account(self, usage: dict, completion, discount: float = 1.0) -> None:
        cost = discount * (completion.input_tokens * self.cfg.price_input_per_1m
                           + completion.output_tokens * self.cfg.price_output_per_1m) / 1e6
        for target in (usage, self.usage):
            target["requests"] += 1
            target["input_tokens"] += completion.input_tokens
            target["output_tokens"] += completion.output_tokens
            target["cost_usd"] += cost

    @staticmethod
    def _check(completion, schema: dict | None) -> tuple[object, str | None]:
        if schema is None:
            return completion.text, None
        data, problem = parse_reply(completion.text, schema)
        if problem and completion.finish_reason == "length":
            problem = f"reply cut at the max-tokens limit, {problem}"
        return data, problem

    def _answered(self, res: Result, req: Request, key: str, completion, data) -> Result:
        """Mark ``res`` answered and journal it."""
        res.raw, res.finish_reason = completion.text, completion.finish_reason
        if self.journal is not None:
            self.journal.put(key, request_key=req.key, repeat=req.repeat, text=completion.text, data=data,
                             usage=dict(res.usage), finish_reason=completion.finish_reason, model=completion.model)
        res.ok, res.data = True, data
        return res

    async def _batch(self, provider, todo: list, results: list, bar) -> list:
        """Answer what the Batch API answers well; return the items left for the normal path."""
        from .openai_batch import BATCH_DISCOUNT, run_batch, state_path

        if self.cfg.provider != "openai":
            raise FatalError(f"the Batch API path needs provider openai, not {self.cfg.provider}")
        answers = await run_batch(self, provider, todo)
        left, first = [], {}
        for i, req, params, key in todo:
            completion = answers.get(key)
            if key in first:  # the same question twice: one answer
                results[i] = replace(results[first[key]], key=req.key, cached=True, attempts=0, usage=self._zero())
                self.usage["cached"] += 1
                bar.update(1)
                continue
            if completion is None:
                left.append((i, req, params, key))
                continue
            res = Result(key=req.key, ok=False, usage=self._zero(), repeat=req.repeat, attempts=1)
            self._account(res.usage, completion, BATCH_DISCOUNT)
            data, problem = self._check(completion, req.schema)
            if problem is not None:
                # re-asked the normal way, told what was wrong with the batch's reply
                left.append((i, req, params, key, (res, completion, problem)))
                continue
            results[i] = self._answered(res, req, key, completion, data)
            first[key] = i
            bar.update(1)
        side = state_path(self)
        if side is not None:
            side.unlink(missing_ok=True)  # every answer is journaled now
        return left

    async def _item(self, provider, req: Request, params: dict, key: str, prior: tuple | None = None) -> Result:
        """Ask one item (``prior``: a Result, reply and problem from the batch, continued with a re-ask)."""
        res = Result(key=req.key, ok=False, usage=self._zero(), repeat=req.repeat)
        messages = list(req.messages)
        asks = range(self.cfg.schema_retries + 1 if req.schema is not None else 1)
        if prior is not None:
            res, completion, problem = prior
            res.raw, res.finish_reason = completion.text, completion.finish_reason
            res.error = f"reply does not match the schema after 1 tries: {problem}"
            messages = [*messages, {"role": "assistant", "content": completion.text},
                        {"role": "user", "content": REASK.format(error=problem, schema=json.dumps(req.schema))}]
            asks = range(1, asks.stop)
        try:
            for ask in asks:
                completion = await self._ask(provider, messages, req.schema, params, res)
                res.raw, res.finish_reason = completion.text, completion.finish_reason
                data, problem = self._check(completion, req.schema)
                if problem is None:
                    return self._answered(res, req, key, completion, data)
                res.error = f"reply does not match the schema after {ask + 1} tries: {problem}"
                messages = [*messages, {"role": "assistant", "content": completion.text},
                            {"role": "user", "content": REASK.format(error=problem,
                                                                      schema=json.dumps(req.schema))}]
        except (_GaveUp, RequestError) as e:
            res.error = str(e)
        except FatalError as e:
            self._fatal = e  # no other item may send once the service said the key or model is wrong
            raise
        except Exception as e:  # noqa: BLE001 - one item's surprise must not sink the run
            res.error = f"{type(e).__name__}: {e}"
        return res

    async def _ask(self, provider, messages: list, schema: dict | None, params: dict, res: Result):
        """One completion, retried on RetryableError up to ``max_retries`` times; counts attempts and usage."""
        estimate = estimate_tokens(messages, schema, params)
        for attempt in range(self.cfg.max_retries + 1):
            grant = await self.limiter.acquire(estimate)
            if self._fatal is not None:
                raise _GaveUp(f"not sent: {self._fatal}")  # the run is stopping on that error
            res.attempts += 1
            try:
                # the SDKs have their own timeout; this one is a backstop against a client that never returns
                completion = await asyncio.wait_for(provider.complete(messages, schema=schema, params=params),
                                                    self.cfg.timeout_s * 2 + 5)
            except RetryableError as e:
                err = e
            except asyncio.TimeoutError:
                err = RetryableError(f"no reply within {self.cfg.timeout_s * 2 + 5:.0f} s")
            else:
                self.limiter.settle(grant, completion.input_tokens + completion.output_tokens)
                self._account(res.usage, completion)
                return completion
            if attempt == self.cfg.max_retries:
                raise _GaveUp(f"gave up after {attempt + 1} attempts: {err}")
            if err.retry_after is not None:
                if err.status == 429:
                    self.limiter.pause(err.retry_after)  # the account is over its limit, not just this request
                delay = err.retry_after * random.uniform(1.0, 1.1)
            else:
                delay = min(self.backoff_cap, self.backoff_base * 2**attempt) * random.uniform(0.5, 1.0)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")
