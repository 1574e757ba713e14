"""Gemini through the async client of ``google-genai`` (the deprecated google-generativeai is not used)."""

from __future__ import annotations

from pathlib import Path

from ._http import connection
from .base import Backoff, Completion, FatalError, Job
from .gemini_wire import ALIASES, as_contents, completion_from, map_error
from .usage import with_reply_limit


class GeminiProvider:
    """``complete()`` maps SDK errors to RetryableError / RequestError / FatalError (see base.py);
    ``run_batch()`` asks many jobs through the Gemini Batch API (a ``BatchProvider``)."""

    name = "gemini"
    batch_discount = 0.5  # the Batch API costs half of the synchronous price
    # one batch's inline requests stay under the API's 20 MB; more go in several
    batch_inline_bytes = 19_000_000

    def __init__(self, cfg):
        from google import genai
        from google.genai import types

        self.model = cfg.model
        self.structured_output = cfg.structured_output
        self._types = types
        key, base_url = connection(cfg, "gemini", "GOOGLE_GEMINI_BASE_URL")
        # one attempt: duo retries and books every send itself (the SDK's aiohttp transport, used whenever aiohttp
        # is installed, re-sends a dropped connection by itself unless retry options are given)
        options = types.HttpOptions(base_url=base_url, timeout=int(cfg.timeout_s * 1000),
                                    retry_options=types.HttpRetryOptions(attempts=1))
        # keep the Client itself referenced: its async client is closed when the Client is collected
        self.client = genai.Client(api_key=key, http_options=options)
        self.aio = self.client.aio

    def _config(self, system: str | None, schema: dict | None, params: dict | None):
        """The ``GenerateContentConfig`` of one request, sync or batch: ``params`` in Gemini's
        names, with the token limit the spend cap reserved for when they set none."""
        sent = with_reply_limit(params, "max_output_tokens")
        fields = {ALIASES.get(k, k): v for k, v in sent.items()}
        if isinstance(fields.get("stop_sequences"), str):
            fields["stop_sequences"] = [fields["stop_sequences"]]
        if system:
            fields["system_instruction"] = system
        if schema is not None and self.structured_output:
            fields.update(response_mime_type="application/json", response_json_schema=schema)
        unknown = set(fields) - set(self._types.GenerateContentConfig.model_fields)
        if unknown:
            raise FatalError(f"gemini: unknown generation parameter(s) {sorted(unknown)} in service params")
        return self._types.GenerateContentConfig(**fields)

    async def complete(self, messages: list, *, schema: dict | None = None, params: dict | None = None
                       ) -> Completion:
        system, contents = as_contents(messages)
        config = self._config(system, schema, params)
        where = f"gemini {self.model}"
        try:
            reply = await self.aio.models.generate_content(model=self.model, contents=contents,
                                                           config=config)
        except Exception as e:
            mapped = map_error(e, where)
            if mapped is e:
                raise
            raise mapped from None
        return completion_from(reply, self.model, where)

    def batch_request(self, job: Job):
        """One ``InlinedRequest`` of a batch, tagged with the job's journal key
        (answers are matched by it)."""
        system, contents = as_contents(job.request.messages)
        return self._types.InlinedRequest(contents=contents, config=self._config(system, job.request.schema,
                                                                                 job.params),
                                          metadata={"key": job.key})

    async def run_batch(self, jobs: list[Job], *, state: Path | None, poll_s: float, backoff: Backoff
                        ) -> dict[str, Completion]:
        """Journal key -> Completion for the jobs the Gemini Batch API answered (see gemini_batch.py)."""
        from .gemini_batch import run_batch

        return await run_batch(self, jobs, state=state, poll_s=poll_s, backoff=backoff)

    async def aclose(self) -> None:
        await self.aio.aclose()
