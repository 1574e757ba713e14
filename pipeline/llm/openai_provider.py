"""OpenAI (and any OpenAI-compatible server: vLLM, Ollama, llama.cpp) through the async ``openai`` SDK."""

from __future__ import annotations

import inspect
from pathlib import Path

from ._http import connection
from .base import Backoff, Completion, Job
from .openai_wire import completion_from, limit_name, map_error, response_format
from .usage import with_reply_limit


class OpenAIProvider:
    """``complete()`` maps SDK errors to RetryableError / RequestError / FatalError (see base.py);
    ``run_batch()`` asks many jobs through the Batch API (a ``BatchProvider``)."""

    name = "openai"
    batch_discount = 0.5  # the Batch API costs half of the synchronous price

    def __init__(self, cfg):
        from openai import AsyncOpenAI
        from openai.resources.chat.completions import AsyncCompletions

        self.model = cfg.model
        self.structured_output = cfg.structured_output
        key, base_url = connection(cfg, "openai", "OPENAI_BASE_URL")
        # the engine does the retrying, with limits shared across requests
        self.client = AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=cfg.timeout_s)
        self.limit_name = limit_name(base_url)
        self._known = (set(inspect.signature(AsyncCompletions.create).parameters)
                       - {"self", "messages", "model"})

    def sent_params(self, params: dict | None) -> dict:
        """``params`` as sent: with the token limit the spend cap reserved for when they set none."""
        return with_reply_limit(params, self.limit_name)

    async def complete(self, messages: list, *, schema: dict | None = None, params: dict | None = None
                       ) -> Completion:
        import openai

        kwargs, extra = {}, {}
        for k, v in self.sent_params(params).items():
            (kwargs if k in self._known else extra)[k] = v  # unknown keys reach compatible servers as-is
        if schema is not None and self.structured_output:
            kwargs["response_format"] = response_format(schema)
        if extra:
            kwargs["extra_body"] = extra
        where = f"openai {self.model}"
        try:
            reply = await self.client.chat.completions.create(model=self.model, messages=messages, **kwargs)
        except (openai.OpenAIError, ValueError) as e:
            raise map_error(e, where) from None
        return completion_from(reply, where)

    async def run_batch(self, jobs: list[Job], *, state: Path | None, poll_s: float, backoff: Backoff
                        ) -> dict[str, Completion]:
        """Journal key -> Completion for the jobs one Batch API batch answered (see openai_batch.py)."""
        from .openai_batch import run_batch

        return await run_batch(self, jobs, state=state, poll_s=poll_s, backoff=backoff)

    async def aclose(self) -> None:
        await self.client.close()
