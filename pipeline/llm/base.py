"""What every service-LLM provider and the engine share: requests, results, usage and typed errors.

A provider implements ``complete(messages, *, schema=None, params) -> Completion`` and raises the
errors below; one with a batch API also implements ``run_batch`` (``BatchProvider``). The engine
(``engine.py``) adds concurrency, rate limits, retries, schema checks, the journal and cost.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..errors import DuoError


@dataclass(frozen=True)
class Completion:
    """One reply of the service: its text and the tokens the service says it used. ``finish_reason`` is
    normalised: ``"stop"``, ``"length"`` (cut by max tokens), or the provider's own word in lower case."""

    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    model: str | None = None
    finish_reason: str | None = None


@dataclass(frozen=True)
class Request:
    """One item to ask. ``key`` is the caller's id for the item, unique within a run; ``repeat`` tells apart
    repeated asks of the same prompt (e.g. K judge samples) so each gets its own journal entry."""

    key: str
    messages: list
    schema: dict | None = None
    repeat: int = 0
    params: dict | None = None


@dataclass
class Result:
    """The outcome of one Request. ``ok`` with ``data`` (parsed JSON when a schema was given, else
    the text), or not ``ok`` with ``error`` and the last ``raw`` reply text kept for the record.
    ``finish_reason`` is that of the reply kept (``"length"`` means it was cut by the max-tokens
    limit). ``usage`` is what this item cost in this run: ``requests``, ``input_tokens``,
    ``output_tokens``, ``cost_usd`` (zeros when ``cached``)."""

    key: str
    ok: bool
    data: Any = None
    raw: str | None = None
    error: str | None = None
    attempts: int = 0
    cached: bool = False
    usage: dict = field(default_factory=dict)
    repeat: int = 0
    finish_reason: str | None = None


@dataclass(frozen=True)
class Job:
    """One uncached Request of a run: its place in the results, its merged params and its journal
    key. ``prior`` is (Result, Completion, problem) when a batch's reply failed the schema and is to
    be re-asked."""

    index: int
    request: Request
    params: dict
    key: str
    prior: tuple | None = None


@dataclass(frozen=True)
class Backoff:
    """How often and how long to wait before another try of a RetryableError."""

    max_retries: int
    base: float = 1.0
    cap: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """The service's Retry-After plus up to 10 %,
        else ``base * 2**attempt`` (at most ``cap``) with jitter."""
        if retry_after is not None:
            return retry_after * random.uniform(1.0, 1.1)
        return min(self.cap, self.base * 2**attempt) * random.uniform(0.5, 1.0)


class Provider(Protocol):
    name: str
    model: str

    async def complete(self, messages: list, *, schema: dict | None = None, params: dict | None = None
                       ) -> Completion: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class BatchProvider(Provider, Protocol):
    """A provider that can also answer many jobs at once through a slower, cheaper batch API."""

    batch_discount: float  # the share of the synchronous price a batch answer costs

    async def run_batch(self, jobs: list[Job], *, state: Path | None, poll_s: float, backoff: Backoff
                        ) -> dict[str, Completion]:
        """Journal key -> Completion for the jobs the batch answered. ``state`` is a file to keep
        the batch id in, so a killed run waits for the same batch again; the engine removes it once
        the answers are kept."""
        ...


class ServiceError(DuoError):
    """Base of the provider errors; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class RetryableError(ServiceError):
    """429, 5xx, timeouts, dropped connections: worth another try after ``retry_after`` seconds if given.
    ``exhausted``: the account's limit a 429's headers say has no room left (``"requests"`` or
    ``"tokens"``: OpenAI's ``x-ratelimit-remaining-*`` at 0), else None."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None,
                 exhausted: str | None = None):
        super().__init__(message, status)
        self.retry_after = retry_after
        self.exhausted = exhausted


class RequestError(ServiceError):
    """The service refused this one item (400, 422, blocked content): not retried, the item is a failure."""


class FatalError(ServiceError):
    """401/403/404 and other refusals that another try cannot fix: the run stops with this message."""
