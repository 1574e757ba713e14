"""What goes to Gemini and what comes back, for the provider and its batch path alike: chat messages
as contents, a Completion from a reply, the duo error for a ``google-genai`` or transport
exception."""

from __future__ import annotations

from ._http import retry_after
from .base import Completion, FatalError, RequestError, RetryableError

ALIASES = {
    "max_tokens": "max_output_tokens",
    "max_completion_tokens": "max_output_tokens",
    "stop": "stop_sequences",
}
FINISH = {"STOP": "stop", "MAX_TOKENS": "length"}


def as_contents(messages: list) -> tuple[str | None, list]:
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
    details = ((err.details or {}).get("error", {}).get("details", [])
               if isinstance(err.details, dict) else [])
    for d in details:
        if isinstance(d, dict) and str(d.get("retryDelay", "")).endswith("s"):
            try:
                return float(d["retryDelay"][:-1])
            except ValueError:
                pass
    return None


def _is_aiohttp_error(e: Exception) -> bool:
    """An aiohttp client error (the SDK's async transport when aiohttp is installed), without importing it."""
    return any(c.__module__.startswith("aiohttp") and c.__name__ == "ClientError" for c in type(e).__mro__)


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
    if isinstance(e, (httpx2.TransportError, TimeoutError)) or _is_aiohttp_error(e):
        # timeouts and dropped connections; the SDK sends through aiohttp whenever it is installed
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
    return Completion(text=text,
                      input_tokens=(usage.prompt_token_count or 0) if usage else 0,
                      output_tokens=out,
                      model=reply.model_version or model,
                      finish_reason=FINISH.get(finish, finish.lower() if finish else None))
