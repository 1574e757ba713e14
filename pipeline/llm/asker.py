"""Asking one item: rate-limited sends, retries with backoff (honouring Retry-After), schema checks
with bounded re-asking. A failure becomes a Result that is not ``ok``; only a FatalError is raised,
and it stops every other item from sending.
"""

from __future__ import annotations

import asyncio
import re

from .base import Backoff, Completion, FatalError, Job, RequestError, Result, RetryableError
from .concurrency import InFlight
from .journal import recorded_send, unbilled
from .limiter import RateLimiter
from .replies import check_reply, reask
from .usage import OutputMean, PromptGauge, UsageMeter, estimate_tokens, prompt_tokens, zero_usage

# which limit a 429 says was hit: OpenAI's "... on tokens per min (TPM)" / "on requests per min
# (RPM)", Gemini's quota metric names ("..._input_token_count", "..._requests"); anything else holds
# both buckets
TOKENS_429 = re.compile(r"tokens per min|\(TPM\)|tokens per day|token_count|\btokens\b",
                        re.IGNORECASE)
REQUESTS_429 = re.compile(r"requests per min|\(RPM\)|requests per day|_requests\b|\brequests\b",
                          re.IGNORECASE)
# a 429 that says the account is at its limit (OpenAI's "Rate limit reached for <model> in organization
# ... on requests per min (RPM)", Gemini's "RESOURCE_EXHAUSTED: Quota exceeded for metric ..."); any
# other 429 (a busy server, a random refusal) is about that one request
ACCOUNT_429 = re.compile(r"rate limit reached for|\bper (?:min|minute|day)\b|\((?:RPM|TPM|RPD|TPD)\)|"
                         r"quota exceeded for", re.IGNORECASE)


class GaveUp(Exception):
    """Retries exhausted for one item."""


class OverBudget(Exception):
    """The spend cap does not allow this send (``budget.Spend.reserve`` refused it)."""


def bucket_of(error: Exception) -> str | None:
    """``"tokens"`` or ``"requests"``: the limit a 429 says the account is over;
    None when it does not say."""
    text = str(error)
    if TOKENS_429.search(text):
        return "tokens"
    return "requests" if REQUESTS_429.search(text) else None


def at_account_limit(error: RetryableError) -> bool:
    """Whether a 429 says the account is at its limit (its headers or its message), not just busy."""
    return getattr(error, "exhausted", None) is not None or bool(ACCOUNT_429.search(str(error)))


def rejected(res: Result, completion: Completion, problem: str, tries: int) -> None:
    """Keep a reply that failed the schema on ``res``,
    with what was wrong, as the failure it is if no re-ask helps."""
    res.raw, res.finish_reason = completion.text, completion.finish_reason
    res.error = f"reply does not match the schema after {tries} tries: {problem}"


def accepted(res: Result, completion: Completion, data) -> Result:
    """``res`` answered by ``completion`` (``data``: its parsed content)."""
    res.ok, res.data, res.error = True, data, None
    res.raw, res.finish_reason = completion.text, completion.finish_reason
    return res


class Asker:
    """Asks one Job at a time (many concurrently) against a provider.

    Args:
        cfg: the ``ServiceLLMConfig`` (schema_retries, timeout_s).
        limiter: shared by every item: a 429 that says the account is at its limit pauses all of
            them (the bucket it names) for its Retry-After; any other 429 holds only its own request
            that long, gives its grant back (``RateLimiter.refund``) until a 429 at the account's
            limit shows that the server counts refusals, and slows the pace when they persist (AIMD).
        backoff: retries of a RetryableError and the delay between them.
        meter: where each reply's usage is counted.
        spend: a ``budget.Spend`` that reserves each send's worst-case cost first (None: no cap).
        journal: the engine's ``Journal``; a ledger journal records every send and what its reply cost.
        inflight: the engine's ``InFlight``, told how long each send took (None: nobody is told).
    """

    def __init__(self, cfg, limiter: RateLimiter, backoff: Backoff, meter: UsageMeter, spend=None,
                 journal=None, inflight: InFlight | None = None):
        self.cfg = cfg
        self.inflight = inflight
        self.outputs = OutputMean()  # a reply's tokens, for the limiter, when no max_tokens bounds them
        self.gauge = PromptGauge()  # a prompt's tokens, calibrated by the replies
        self.journal = journal
        self.limiter = limiter
        self.backoff = backoff
        self.meter = meter
        self.spend = spend
        self.fatal: FatalError | None = None

    async def item(self, provider, job: Job) -> tuple[Result, Completion | None]:
        """The Result of ``job`` and the last reply (for the journal when the Result is ``ok``)."""
        req = job.request
        res = Result(key=req.key, ok=False, usage=zero_usage(), repeat=req.repeat)
        messages, completion, first = list(req.messages), None, 0
        if job.prior is not None:  # a batch's reply failed the schema: go on from there with a re-ask
            res, completion, problem = job.prior
            rejected(res, completion, problem, 1)
            messages, first = reask(messages, completion.text, problem, req.schema), 1
        try:
            for ask in range(first, self.cfg.schema_retries + 1 if req.schema is not None else 1):
                completion = await self.ask(provider, messages, req.schema, job.params, res)
                data, problem = check_reply(completion, req.schema)
                if problem is None:
                    return accepted(res, completion, data), completion
                rejected(res, completion, problem, ask + 1)
                messages = reask(messages, completion.text, problem, req.schema)
        except OverBudget:
            # with attempts 0: never sent (budget.not_sent); else a re-ask was not allowed
            res.error = "budget"
        except (GaveUp, RequestError) as e:
            res.error = str(e)
        except FatalError as e:
            self.fatal = e  # no other item may send once the service said the key or model is wrong
            raise
        except Exception as e:  # noqa: BLE001 - one item's surprise must not sink the run
            res.error = f"{type(e).__name__}: {e}"
        return res, completion

    async def ask(self, provider, messages: list, schema: dict | None, params: dict,
                  res: Result) -> Completion:
        """One completion, retried on RetryableError up to ``max_retries`` times;
        counts attempts and usage."""
        # booked when the grant is made, from what the replies so far have taught
        def estimate() -> int:
            return estimate_tokens(messages, schema, params, self.outputs, self.gauge)

        counted = prompt_tokens(messages, schema)
        # the SDKs have their own timeout; this one is a backstop against a client that never returns
        timeout = self.cfg.timeout_s * 2 + 5
        for attempt in range(self.backoff.max_retries + 1):
            grant = await self.limiter.acquire(estimate)
            if self.fatal is not None:
                raise GaveUp(f"not sent: {self.fatal}")  # the run is stopping on that error
            held = await self.spend.areserve(messages, schema, params) if self.spend is not None else 0.0
            if held is None:
                raise OverBudget()
            res.attempts += 1
            # what the reservation settles at: an HTTP error costs 0; a lost reply (a timeout, a
            # dropped connection) is unknown (None), as the ledger books it (``unbilled``)
            charged = None
            flight, tokens = self.inflight.started() if self.inflight is not None else None, None
            try:
                async with recorded_send(self.journal, getattr(provider, "model", None), messages,
                                         schema, params, self.meter) as send:
                    completion = await asyncio.wait_for(
                        provider.complete(messages, schema=schema, params=params), timeout)
                    if send is not None:
                        send.answered(completion)
            except RetryableError as e:
                err = e
                charged = 0.0 if unbilled(e) else None
            except asyncio.TimeoutError:
                err = RetryableError(f"no reply within {timeout:.0f} s")
                charged = None
            except (RequestError, FatalError) as e:  # not retried: a refusal (0) or an empty reply (unknown)
                charged = 0.0 if unbilled(e) else None
                raise
            else:
                tokens = completion.input_tokens + completion.output_tokens
                self.limiter.settle(grant, tokens)
                self.limiter.succeeded()
                self.outputs.observe(completion.output_tokens)
                self.gauge.observe(counted, completion.input_tokens)
                before = res.usage["cost_usd"]
                self.meter.account(res.usage, completion)
                charged = res.usage["cost_usd"] - before
                return completion
            finally:
                if self.spend is not None:
                    self.spend.settle(held, charged)
                if flight is not None:
                    self.inflight.finished(flight, tokens)
            if attempt == self.backoff.max_retries:
                raise GaveUp(f"gave up after {attempt + 1} attempts: {err}")
            if err.status == 429:
                self.limiter.throttled()
                if at_account_limit(err):
                    # the server's count is fuller than duo's window: its refusals may count there
                    self.limiter.refusals_counted()
                    if err.retry_after is not None:
                        # the account is over a limit, not just this request: hold every send of that
                        # bucket for what the server asked, no longer; this one goes back to the
                        # limiter, which lets it out in its turn
                        self.limiter.pause(err.retry_after, err.exhausted or bucket_of(err))
                        continue
                else:  # refused on its own: while the server is not shown to count it, the grant goes back
                    self.limiter.refund(grant)
                # else only this request waits its Retry-After, then queues again
            delay = self.backoff.delay(attempt, err.retry_after)
            if self.inflight is not None:
                self.inflight.held(delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")
