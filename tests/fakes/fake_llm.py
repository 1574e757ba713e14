"""A service-LLM provider for pure-logic tests, in the spirit of simonw/llm's ``MockModel``: no server, no SDK.

``FakeLLM`` implements the provider protocol of ``pipeline/llm/base.py`` (``complete`` and ``aclose``)::

    fake = FakeLLM().enqueue({"answer": "a"}, rate_limited(retry_after=0.01), "not json")
    results = Engine(service_cfg(), provider=fake, progress=False).run(requests)
    fake.history[0].messages       # what the engine sent first

- ``enqueue(*replies)``: replies served in the order calls arrive (run the engine with ``concurrency=1`` when the
  order matters). A reply is a ``str`` (the text), a dict or list (JSON-dumped), a ``Completion`` (as is), or an
  exception (raised: ``rate_limited()``, ``server_error()``, ``refused()``, ``bad_key()`` or any other).
- With the queue empty, ``responder(messages, schema, params)`` answers when given, else the reply is
  ``schema_example(schema)`` with a schema and the last user message without one.
- ``history``: one ``FakeCall(messages, schema, params)`` per ``complete`` call, faults included.
- Tokens are whitespace-separated words, as in the fake servers; ``finish_reason`` is ``"stop"``.

The ``fake_llm`` fixture yields a FakeLLM that the provider registry builds for every provider name ("fake",
"openai", "gemini") while the test runs, so a stage whose config names any provider talks to it.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from pipeline.llm import PROVIDERS, Completion, FatalError, RequestError, RetryableError, register_provider

from .openai_server import count_words, schema_example


@dataclass(frozen=True)
class FakeCall:
    """One ``complete`` call the fake received."""

    messages: list
    schema: dict | None
    params: dict


def rate_limited(retry_after: float | None = 1.0) -> RetryableError:
    """A 429 with Retry-After that does not say the account is at its limit: the engine holds this
    item for ``retry_after`` seconds, then retries it."""
    return RetryableError("fake: HTTP 429: rate limit reached", retry_after=retry_after, status=429)


def server_error() -> RetryableError:
    """A 500: retried with exponential backoff."""
    return RetryableError("fake: HTTP 500: internal error", status=500)


def refused(message: str = "content policy") -> RequestError:
    """A 400: this item fails, not retried."""
    return RequestError(f"fake: HTTP 400: {message}", status=400)


def bad_key() -> FatalError:
    """A 401: the run stops."""
    return FatalError("fake: HTTP 401: invalid API key", status=401)


class FakeLLM:
    """See the module docstring."""

    name = "fake"

    def __init__(self, model: str = "fake-model", responder: Callable | None = None):
        self.model = model
        self.responder = responder
        self.queue: deque = deque()
        self.history: list[FakeCall] = []
        self.closed = 0

    def enqueue(self, *replies) -> FakeLLM:
        """Add replies to serve, one a call, in order."""
        self.queue.extend(replies)
        return self

    def _default(self, messages: list, schema: dict | None, params: dict):
        if self.responder is not None:
            return self.responder(messages, schema, params)
        if schema is not None:
            return schema_example(schema)
        users = [m["content"] for m in messages if m.get("role") == "user"]
        return users[-1] if users else ""

    async def complete(self, messages: list, *, schema: dict | None = None, params: dict | None = None
                       ) -> Completion:
        params = dict(params or {})
        self.history.append(FakeCall(messages=list(messages), schema=schema, params=params))
        reply = self.queue.popleft() if self.queue else self._default(messages, schema, params)
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, Completion):
            return reply
        text = reply if isinstance(reply, str) else json.dumps(reply)
        return Completion(text=text, input_tokens=sum(count_words(m.get("content") or "") for m in messages),
                          output_tokens=count_words(text), model=self.model, finish_reason="stop")

    async def aclose(self) -> None:
        self.closed += 1


@pytest.fixture
def fake_llm():
    """A FakeLLM built for every provider name while the test runs; the registry is put back after it."""
    fake = FakeLLM()
    previous = {name: register_provider(name, lambda cfg: fake) for name in dict.fromkeys(["fake", *PROVIDERS])}
    yield fake
    for name, factory in previous.items():
        register_provider(name, factory)
