"""The engine: asks a service LLM many things at once and gives back one Result per Request, in order.

It adds to a provider: concurrency that follows the limits (``concurrency.py``), request and token
rate limits, retries with exponential backoff and jitter (a 429 that says the account is at its limit
pauses every send for its Retry-After, no longer; any other 429 holds only its own request), schema
validation with bounded re-asking (``asker.py``), a journal of answers (a rerun pays
nothing for what it already has), usage and cost (``usage.py``), and the provider's batch API when
it has one. One bad item becomes a failed Result; only a FatalError (bad key, unknown model, missing
key) stops the run, and everything answered before it is in the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from ..prices import price_of
from .asker import Asker, accepted
from .base import Backoff, BatchProvider, Completion, FatalError, Job, Request, Result
from .concurrency import InFlight
from .journal import Journal, keyed, record_batch
from .limiter import RateLimiter
from .providers import create_provider
from .replies import check_reply
from .usage import UsageMeter, estimate_tokens, zero_usage


class Engine:
    """Runs Requests against the configured service LLM.

    Args:
        service_cfg: a ``ServiceLLMConfig`` (provider, model, rpm, tpm, concurrency (``auto``:
            follows the limits at the observed latency, up to max_concurrency), prices, params,
            retries).
        journal: JSONL file of answers to reuse and extend; None keeps nothing.
        provider: a ready provider (tests, other backends); default: built from the config on first need.
        period: seconds of the rate-limit window (60; tests shorten it).
        backoff_base, backoff_cap: seconds of the first retry delay and the most any delay grows to.
        progress: show a tqdm bar on stderr.
        batch: send uncached items through the provider's batch API first (OpenAI's: half price, slow).
        batch_poll_s: seconds between polls of a batch.
        spend: a ``budget.Spend``: each send first reserves its worst-case cost there; what does not
            fit is not sent (Result ``ok=False, error="budget"``, ``attempts`` 0), so the cap holds
            with requests in flight.
    """

    def __init__(self, service_cfg, journal: Path | str | None = None, provider=None, *,
                 period: float = 60.0, backoff_base: float = 1.0, backoff_cap: float = 60.0,
                 progress: bool = True, batch: bool = False, batch_poll_s: float = 30.0,
                 spend=None):
        self.cfg = service_cfg
        self.journal = Journal(journal) if journal is not None else None
        self._provider = provider
        self.limiter = RateLimiter(service_cfg.rpm, service_cfg.tpm, period=period)
        self.limiter.counts_refusals(getattr(service_cfg, "refusals_count", "auto"))
        self.inflight = InFlight(getattr(service_cfg, "concurrency", "auto"),
                                 service_cfg.rpm,
                                 service_cfg.tpm,
                                 cap=getattr(service_cfg, "max_concurrency", 256),
                                 period=period)
        self.backoff = Backoff(service_cfg.max_retries, backoff_base, backoff_cap)
        self.progress = progress
        self.batch = batch
        self.batch_poll_s = batch_poll_s
        self.meter = UsageMeter(*price_of(service_cfg))
        self.usage = self.meter.totals
        self.spend = spend
        self.asker = Asker(service_cfg, self.limiter, self.backoff, self.meter, spend, self.journal,
                           self.inflight)

    def run(self, requests: list[Request], desc: str = "service LLM") -> list[Result]:
        """Synchronous ``arun``; works inside a running event loop too (it then runs in a worker thread)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.arun(requests, desc))
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, self.arun(requests, desc)).result()

    async def arun(self, requests: list[Request], desc: str = "service LLM") -> list[Result]:
        """One Result per Request, in order: from the journal,
        else from the batch API (``batch``), else asked."""
        from tqdm import tqdm

        requests = list(requests)
        results: list[Result | None] = [None] * len(requests)
        jobs = self._from_journal(requests, results)
        if not jobs:
            return results
        async with self._opened_provider() as provider:  # first: a missing key fails before any progress bar
            bar = tqdm(total=len(requests), initial=len(requests) - len(jobs), desc=desc, unit="req",
                       file=sys.stderr, disable=not self.progress, mininterval=0.5)
            try:
                self.asker.fatal = None
                if self.batch:
                    jobs = await self._batch(provider, jobs, results, bar)
                await self._ask_all(provider, jobs, results, bar)
            finally:
                bar.close()
        return results

    # -- orchestration ----------------------------------------------------------------------------
    def in_journal(self, requests: list[Request]) -> list[bool]:
        """Whether each request's answer is already in the journal (it would cost nothing); sends nothing."""
        found = []
        for req in requests:
            _, key = keyed(self.cfg, req)
            found.append(self.journal is not None and self.journal.get(key) is not None)
        return found

    def _from_journal(self, requests: list[Request], results: list) -> list[Job]:
        """Fill ``results`` with the journal's answers; the Jobs for the rest."""
        jobs = []
        for i, req in enumerate(requests):
            params, key = keyed(self.cfg, req)
            hit = self.journal.get(key) if self.journal is not None else None
            if hit is None:
                jobs.append(Job(i, req, params, key))
                continue
            results[i] = Result(key=req.key,
                                ok=True,
                                data=hit.get("data"),
                                raw=hit.get("text"),
                                cached=True,
                                usage=zero_usage(),
                                repeat=req.repeat,
                                finish_reason=hit.get("finish_reason"))
            self.meter.cached()
        return jobs

    @contextlib.asynccontextmanager
    async def _opened_provider(self):
        """The provider given to the engine, else one built
        from the config for this run and closed after it."""
        if self._provider is not None:
            yield self._provider
            return
        provider = create_provider(self.cfg)
        try:
            yield provider
        finally:
            await provider.aclose()

    async def _ask_all(self, provider, jobs: list[Job], results: list, bar) -> None:
        """Ask ``jobs``, as many at a time as ``self.inflight`` lets in, each question once;
        a FatalError cancels the rest and is raised."""
        inflight: dict[str, asyncio.Future] = {}
        if self.cfg.tpm:  # a run longer than one window spreads its tokens over it (RateLimiter.token_pace)
            asker = self.asker
            self.limiter.token_pace = sum(
                estimate_tokens(j.request.messages, j.request.schema, j.params, asker.outputs, asker.gauge)
                for j in jobs) > self.cfg.tpm

        async def one(job: Job) -> None:
            if job.key in inflight:  # the same question twice in one run is asked once
                results[job.index] = self._twin(await asyncio.shield(inflight[job.key]), job.request)
            else:
                inflight[job.key] = asyncio.get_running_loop().create_future()
                async with self.inflight.slot():
                    res, completion = await self.asker.item(provider, job)
                inflight[job.key].set_result(self._kept(job, res, completion))
                results[job.index] = res
            bar.update(1)

        await _all_or_first_error([asyncio.ensure_future(one(job)) for job in jobs])

    async def _batch(self, provider, jobs: list[Job], results: list, bar) -> list[Job]:
        """Answer what the provider's batch API answers well; return the jobs left for the normal path."""
        if not isinstance(provider, BatchProvider):
            raise FatalError("the Batch API path needs a provider that has one (openai, gemini), "
                             f"not {self.cfg.provider}")
        state = Path(str(self.journal.path) + ".batch.json") if self.journal is not None else None
        jobs, held = self._reserve_batch(jobs, results, provider.batch_discount, bar)
        answers = await provider.run_batch(jobs, state=state, poll_s=self.batch_poll_s, backoff=self.backoff)
        # the ledger: what the batch cost
        record_batch(self.journal, answers, provider.batch_discount, self.meter)
        left, first = [], {}
        for job in jobs:
            cost_before = self.meter.totals["cost_usd"]
            self._batch_one(job, answers, results, first, left, provider, bar)
            # its real cost; 0 when the batch did not answer it (the normal path reserves anew)
            if job.index in held:
                self.spend.settle(held[job.index], self.meter.totals["cost_usd"] - cost_before)
        if state is not None:
            state.unlink(missing_ok=True)  # every answer is journaled now
        return left

    def _reserve_batch(self, jobs: list[Job], results: list, discount: float, bar) -> tuple[list[Job], dict]:
        """The jobs whose worst-case cost the spend cap allows (each reserved), and {job index: USD held}."""
        if self.spend is None:
            return jobs, {}
        kept, held = [], {}
        for job in jobs:
            cost = self.spend.reserve(job.request.messages, job.request.schema, job.params,
                                      discount=discount)
            if cost is None:
                results[job.index] = Result(key=job.request.key,
                                            ok=False,
                                            error="budget",
                                            usage=zero_usage(),
                                            repeat=job.request.repeat,
                                            attempts=0)
                bar.update(1)
                continue
            kept.append(job)
            held[job.index] = cost
        return kept, held

    def _batch_one(self, job: Job, answers: dict, results: list, first: dict, left: list, provider,
                   bar) -> None:
        """One job after the batch: its answer, its twin's, or onto ``left`` for the normal path."""
        if job.key in first:  # the same question twice: one answer, or the twin's re-ask, waited for
            twin = results[first[job.key]]
            if twin is None:
                left.append(job)
            else:
                results[job.index] = self._twin(twin, job.request)
                bar.update(1)
            return
        first[job.key] = job.index
        completion = answers.get(job.key)
        if completion is None:
            left.append(job)
            return
        res = Result(key=job.request.key, ok=False, usage=zero_usage(), repeat=job.request.repeat,
                     attempts=1)
        self.meter.account(res.usage, completion, provider.batch_discount)
        data, problem = check_reply(completion, job.request.schema)
        if problem is not None:  # re-asked the normal way, told what was wrong with the batch's reply
            left.append(replace(job, prior=(res, completion, problem)))
            return
        results[job.index] = self._kept(job, accepted(res, completion, data), completion)
        bar.update(1)

    # -- one result -------------------------------------------------------------------------------
    def _kept(self, job: Job, res: Result, completion: Completion | None) -> Result:
        """``res``, journaled when it is an answer."""
        if res.ok and self.journal is not None:
            self.journal.put(job.key,
                             request_key=job.request.key,
                             repeat=job.request.repeat,
                             text=completion.text,
                             data=res.data,
                             usage=dict(res.usage),
                             finish_reason=completion.finish_reason,
                             model=completion.model)
        return res

    def _twin(self, first: Result, req: Request) -> Result:
        """The Result of the same question asked again in this run: ``first``'s, at no cost."""
        if first.ok:
            self.meter.cached()
        return replace(first, key=req.key, cached=first.ok, attempts=0, usage=zero_usage())


async def _all_or_first_error(tasks: list[asyncio.Future]) -> None:
    """Wait for every task; at the first exception cancel the rest and raise it."""
    if not tasks:  # the batch may have answered everything: asyncio.wait refuses an empty set
        return
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    errors = [task.exception() for task in done if not task.cancelled()]  # retrieve all: no asyncio noise
    fatal = next((e for e in errors if e is not None), None)
    if fatal is not None:
        raise fatal
