"""What goes to OpenAI and what comes back, for the provider and its batch path alike: the structured-output
format, a request body, a Completion from a reply, the duo error for an SDK exception."""

from __future__ import annotations

import json
import re
from urllib.parse import urlparse

from ._http import retry_after
from .base import Completion, FatalError, RequestError, RetryableError

OPENAI_HOST = "api.openai.com"


def _strict_ok(schema) -> bool:
    """OpenAI's strict mode needs every object closed and every property required."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" or "properties" in schema:
            props = schema.get("properties", {})
            if (schema.get("additionalProperties") is not False
                    or set(schema.get("required", [])) != set(props)):
                return False
        return all(_strict_ok(v) for v in schema.values())
    if isinstance(schema, list):
        return all(_strict_ok(v) for v in schema)
    return True


def limit_name(base_url: str | None) -> str:
    """The parameter a reply's token limit is sent in when params set none: OpenAI's own API takes
    ``max_completion_tokens`` from every model (its o-series and gpt-5 refuse ``max_tokens``);
    a compatible server at ``base_url`` (vLLM, Ollama, llama.cpp) may know only ``max_tokens``."""
    if base_url is None or urlparse(base_url).hostname == OPENAI_HOST:
        return "max_completion_tokens"
    return "max_tokens"


def response_format(schema: dict) -> dict:
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", str(schema.get("title") or "reply"))[:64]
    return {"type": "json_schema",
            "json_schema": {"name": name, "schema": schema, "strict": _strict_ok(schema)}}


def exhausted(headers) -> str | None:
    """The limit OpenAI's ``x-ratelimit-remaining-requests`` / ``-tokens`` headers say is at 0, else None."""
    for bucket in ("requests", "tokens"):
        if headers is not None and headers.get(f"x-ratelimit-remaining-{bucket}") == "0":
            return bucket
    return None


def map_error(e: Exception, where: str) -> Exception:
    """The duo error for an ``openai`` SDK exception (others are returned unchanged)."""
    import openai

    if isinstance(e, openai.APIStatusError):
        status = e.status_code
        if status in (401, 403, 404) or getattr(e, "code", None) == "insufficient_quota":
            return FatalError(f"{where}: HTTP {status}: {e.message}", status=status)
        if status in (408, 409, 429) or status >= 500:
            return RetryableError(f"{where}: HTTP {status}: {e.message}",
                                  retry_after(e.response.headers), status, exhausted(e.response.headers))
        return RequestError(f"{where}: HTTP {status}: {e.message}", status=status)
    if isinstance(e, (openai.APIConnectionError, openai.APIResponseValidationError)):
        return RetryableError(f"{where}: {type(e).__name__}: {e}")
    if isinstance(e, ValueError):  # a 200 whose body is not JSON
        return RetryableError(f"{where}: malformed reply: {e}")
    return e


def completion_from(reply, where: str) -> Completion:
    """A Completion from a chat completion object (SDK model or the dict of a batch output line)."""
    if isinstance(reply, dict):
        from openai.types.chat import ChatCompletion

        reply = ChatCompletion.model_validate(reply)
    if not reply.choices:
        raise RetryableError(f"{where}: reply without choices")
    choice = reply.choices[0]
    text = choice.message.content
    if text is None and getattr(choice.message, "tool_calls", None):  # a tool-call answer, as its text
        from ..data.structured import tool_calls_text

        text, _ = tool_calls_text([c.model_dump() for c in choice.message.tool_calls])
    if text is None:
        refusal = getattr(choice.message, "refusal", None)
        raise RequestError(f"{where}: no content (finish_reason {choice.finish_reason}"
                           + (f", refusal: {refusal}" if refusal else "") + ")")
    usage = reply.usage
    return Completion(text=text, input_tokens=usage.prompt_tokens if usage else 0,
                      output_tokens=usage.completion_tokens if usage else 0, model=reply.model,
                      finish_reason=choice.finish_reason)


def dump_request(model: str, messages: list, schema: dict | None, params: dict | None,
                 structured: bool) -> dict:
    """The body of one chat completion, as the Batch API wants it
    (``params`` as sent: the provider's ``sent_params``)."""
    body = {"model": model, "messages": messages, **(params or {})}
    if schema is not None and structured:
        body["response_format"] = response_format(schema)
    return json.loads(json.dumps(body))
