"""Gemini through the async client of ``google-genai`` (the deprecated google-generativeai is not used)."""

from __future__ import annotations

from pathlib import Path

from ._http import connection, retry_after
from .base import Backoff, Completion, FatalError, Job, RequestError, RetryableError

ALIASES = {"max_tokens": "max_output_tokens", "max_completion_tokens": "max_output_tokens", "stop": "stop_sequences"}
FINISH = {"STOP": "stop", "MAX_TOKENS": "length"}


def _contents(messages: list) -> tuple[str | None, list]:
    """Chat messages -> (system instruction, Gemini contents); the assistant role is called "model"."""
    system, contents = [], []
    for m in messages:
        if m["role"] == "system":
            system.append(m["content"])
        else:
            role = "model" if m["role"] == "assistant" else "user"
            contents.append({"role": role, "parts": [{"text": m["content"]}]})
    return ("\n\n".join(system) or None), contents


def _retry_delay(err) -> float | None:
    """Retry-After from the headers, else google.rpc.RetryInfo.retryDelay ("30s") from the error details."""
    headers = getattr(getattr(err, "response", None), "headers", None)
    delay = retry_after(headers) if headers is not None else None
    if delay is not None:
        return delay
    details = (err.details or {}).get("error", {}).get("details", []) if isinstance(err.details, dict) else []
    for d in details:
        if isinstance(d, dict) and str(d.get("retryDelay", "")).endswith("s"):
            try:
                return float(d["retryDelay"][:-1])
            except ValueError:
                pass
    return None


class GeminiProvider:
    """``complete()`` maps SDK errors to RetryableError / RequestError / FatalError (see base.py); ``run_batch()``
    asks many jobs through the Gemini Batch API (a ``BatchProvider``)."""

    name = "gemini"
    batch_discount = 0.5  # the Batch API costs half of the synchronous price
    batch_inline_bytes = 19_000_000  # one batch's inline requests stay under the API's 20 MB; more go in several

    def __init__(self, cfg):
        from google import genai
        from google.genai import types

        self.model = cfg.model
        self.structured_output = cfg.structured_output
        self._types = types
        key, base_url = connection(cfg, "gemini", "GOOGLE_GEMINI_BASE_URL")
        options = types.HttpOptions(base_url=base_url, timeout=int(cfg.timeout_s * 1000))
        # keep the Client itself referenced: its async client is closed when the Client is collected
        self.client = genai.Client(api_key=key, http_options=options)
        self.aio = self.client.aio

    def _config(self, system: str | None, schema: dict | None, params: dict | None):
        fields = {ALIASES.get(k, k): v for k, v in (params or {}).items()}
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
        import httpx2
        from google.genai import errors

        system, contents = _contents(messages)
        config = self._config(system, schema, params)
        where = f"gemini {self.model}"
        try:
            reply = await self.aio.models.generate_content(model=self.model, contents=contents, config=config)
        except (errors.APIError, httpx2.TransportError, ValueError) as e:
            raise map_error(e, where) from None
        return completion_from(reply, self.model, where)

    def batch_request(self, job: Job):
        """One ``InlinedRequest`` of a batch, tagged with the job's journal key (answers are matched by it)."""
        system, contents = _contents(job.request.messages)
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


def map_error(e: Exception, where: str) -> Exception:
    """The duo error for a ``google-genai`` or transport exception (others are returned unchanged)."""
    import httpx2
    from google.genai import errors

    if isinstance(e, errors.APIError):
        status = e.code or 0
        if status in (401, 403, 404) or "API_KEY_INVALID" in str(e.details):
            return FatalError(f"{where}: HTTP {status} {e.status}: {e.message}", status=status)
        if status in (408, 429) or status >= 500:
            return RetryableError(f"{where}: HTTP {status} {e.status}: {e.message}", _retry_delay(e), status)
        return RequestError(f"{where}: HTTP {status} {e.status}: {e.message}", status=status)
    if isinstance(e, httpx2.TransportError):  # timeouts and dropped connections
        return RetryableError(f"{where}: {type(e).__name__}: {e}")
    if isinstance(e, ValueError):  # a 200 whose body is not JSON
        return RetryableError(f"{where}: malformed reply: {e}")
    return e


def completion_from(reply, model: str, where: str) -> Completion:
    """A Completion from a ``GenerateContentResponse`` (a synchronous reply or one answer of a batch)."""
    if not reply.candidates:
        feedback = getattr(reply, "prompt_feedback", None)
        raise RequestError(f"{where}: no candidates (prompt feedback: {feedback})")
    cand = reply.candidates[0]
    finish = cand.finish_reason.name if cand.finish_reason is not None else None
    parts = (cand.content.parts if cand.content else None) or []
    text = "".join(p.text for p in parts if p.text and not p.thought)
    if not text and finish not in ("STOP", "MAX_TOKENS"):
        raise RequestError(f"{where}: empty reply (finish reason {finish})")
    usage = reply.usage_metadata
    out = ((usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)) if usage else 0
    return Completion(text=text, input_tokens=(usage.prompt_token_count or 0) if usage else 0, output_tokens=out,
                      model=reply.model_version or model,
                      finish_reason=FINISH.get(finish, finish.lower() if finish else None))
