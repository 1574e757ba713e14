"""A fake Gemini API for the real ``google-genai`` SDK
(``genai.Client(api_key=..., http_options=types.HttpOptions(base_url=fake.url))``).

Route: ``POST /{v1|v1beta}/models/{model}:generateContent`` (google-genai 3.4 posts to ``/v1/...`` when given a
base_url), key in ``x-goog-api-key`` (or ``?key=``). Replies carry ``candidates[0].content.parts[].text``,
``finishReason`` and ``usageMetadata`` (promptTokenCount, candidatesTokenCount, totalTokenCount).

- ``set_responder(fn)``: ``fn(body: dict) -> str | dict | Reply`` (the raw request body, camelCase as sent). The
  default echoes the last user text or, when ``generationConfig.responseJsonSchema``/``responseSchema`` is set,
  returns ``schema_example(schema)``.
- Tokens are whitespace words; ``generationConfig.maxOutputTokens`` cuts the text with ``finishReason:
  "MAX_TOKENS"``. ``api_key`` is the key it accepts (400 ``API_KEY_INVALID`` otherwise, as Google answers; 403 when
  no key is sent). ``reported`` totals the usage it replied with.
"""

from __future__ import annotations

import json
from collections import Counter

from .http_base import FakeRequest, FakeServer, Reply, json_reply
from .openai_server import count_words, schema_example

FAKE_GEMINI_KEY = "fake-gemini-key"


def _google_error(status: int, message: str, reason: str, state: str) -> Reply:
    return json_reply({"error": {"code": status, "message": message, "status": state,
                                 "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                                              "domain": "googleapis.com"}]}}, status=status)


def _texts(content: dict | None) -> str:
    return " ".join(p.get("text", "") for p in (content or {}).get("parts", []) if isinstance(p, dict))


def _lower_types(schema):
    """``responseSchema`` uses OpenAPI upper-case type names (OBJECT, STRING); turn them into JSON Schema ones."""
    if isinstance(schema, dict):
        return {k: (v.lower() if k == "type" and isinstance(v, str) else _lower_types(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_lower_types(v) for v in schema]
    return schema


def request_schema(body: dict) -> dict | None:
    cfg = body.get("generationConfig") or {}
    if cfg.get("responseJsonSchema") is not None:
        return cfg["responseJsonSchema"]
    if cfg.get("responseSchema") is not None:
        return _lower_types(cfg["responseSchema"])
    return None


class FakeGemini(FakeServer):
    """See the module docstring."""

    def __init__(self):
        super().__init__()
        self.route("POST", r"/(?P<version>v1|v1beta)/models/(?P<model>[^/:]+):generateContent", self.generate)

    def reset_state(self) -> None:
        self.api_key = FAKE_GEMINI_KEY
        self.responder = self.default_responder
        self.reported: Counter = Counter()

    def set_responder(self, fn) -> None:
        self.responder = fn

    @staticmethod
    def default_responder(body: dict):
        schema = request_schema(body)
        if schema is not None:
            return schema_example(schema)
        users = [c for c in body.get("contents", []) if c.get("role", "user") == "user"]
        return _texts(users[-1]) if users else ""

    def generate(self, req: FakeRequest) -> Reply:
        key = req.header("x-goog-api-key") or req.query.get("key")
        if not key:
            return _google_error(403, "Method doesn't allow unregistered callers (fake).", "API_KEY_MISSING",
                                 "PERMISSION_DENIED")
        if key != self.api_key:
            return _google_error(400, "API key not valid. Please pass a valid API key. (fake)", "API_KEY_INVALID",
                                 "INVALID_ARGUMENT")
        body = req.body
        if not isinstance(body, dict) or not isinstance(body.get("contents"), list):
            return _google_error(400, "Invalid JSON payload: 'contents' is required (fake).", "BAD_REQUEST",
                                 "INVALID_ARGUMENT")
        text = {"violation": "fake"} if req.fault == "schema_violation" else self.responder(body)
        if isinstance(text, Reply):
            return text
        if not isinstance(text, str):
            text = json.dumps(text)
        finish = "STOP"
        limit = (body.get("generationConfig") or {}).get("maxOutputTokens")
        words = text.split()
        if limit is not None and len(words) > limit:
            text, finish = " ".join(words[:limit]), "MAX_TOKENS"
        prompt = sum(count_words(_texts(c)) for c in body["contents"])
        prompt += count_words(_texts(body.get("systemInstruction")))
        out = count_words(text)
        with self.lock:
            self.reported["requests"] += 1
            self.reported["prompt_tokens"] += prompt
            self.reported["completion_tokens"] += out
        return json_reply({
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": finish,
                            "index": 0}],
            "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": out, "totalTokenCount": prompt + out},
            "modelVersion": req.params["model"],
            "responseId": f"fake-{len(self.log)}",
        })
