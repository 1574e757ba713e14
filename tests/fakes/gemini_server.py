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

import itertools
import json
import time
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
        self.route("POST", r"/(?P<version>v1|v1beta)/models/(?P<model>[^/:]+):batchGenerateContent",
                   self.create_batch)
        self.route("GET", r"/(?P<version>v1|v1beta)/batches/(?P<batch_id>[^/]+)", self.get_batch)

    def reset_state(self) -> None:
        self.api_key = FAKE_GEMINI_KEY
        self.responder = self.default_responder
        self.reported: Counter = Counter()
        self.batches: dict[str, dict] = {}
        self.batch_polls = 0
        self.batch_end = "BATCH_STATE_SUCCEEDED"
        self.batch_reverse = False
        self._ids = itertools.count(1)

    def set_responder(self, fn) -> None:
        self.responder = fn

    @staticmethod
    def default_responder(body: dict):
        schema = request_schema(body)
        if schema is not None:
            return schema_example(schema)
        users = [c for c in body.get("contents", []) if c.get("role", "user") == "user"]
        return _texts(users[-1]) if users else ""

    def _denied(self, req: FakeRequest) -> Reply | None:
        key = req.header("x-goog-api-key") or req.query.get("key")
        if not key:
            return _google_error(403, "Method doesn't allow unregistered callers (fake).", "API_KEY_MISSING",
                                 "PERMISSION_DENIED")
        if key != self.api_key:
            return _google_error(400, "API key not valid. Please pass a valid API key. (fake)", "API_KEY_INVALID",
                                 "INVALID_ARGUMENT")
        return None

    def generate(self, req: FakeRequest) -> Reply:
        return self._denied(req) or self.answer(req.body, req.fault, req.params["model"], len(self.log))

    def answer(self, body, fault: str | None, model: str, n: int) -> Reply:
        """Answer one generateContent body (used by the sync route and by batches)."""
        if not isinstance(body, dict) or not isinstance(body.get("contents"), list):
            return _google_error(400, "Invalid JSON payload: 'contents' is required (fake).", "BAD_REQUEST",
                                 "INVALID_ARGUMENT")
        text = {"violation": "fake"} if fault == "schema_violation" else self.responder(body)
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
            "modelVersion": model,
            "responseId": f"fake-{n}",
        })

    # -- batches ---------------------------------------------------------------------------------------------
    def create_batch(self, req: FakeRequest) -> Reply:
        if (denied := self._denied(req)) is not None:
            return denied
        batch = (req.body if isinstance(req.body, dict) else {}).get("batch") or {}
        items = ((batch.get("inputConfig") or {}).get("requests") or {}).get("requests")
        if not isinstance(items, list) or not items:
            return _google_error(400, "batch.inputConfig.requests.requests is required (fake).", "BAD_REQUEST",
                                 "INVALID_ARGUMENT")
        with self.lock:
            batch_id = f"fake{next(self._ids):06d}"
            self.batches[batch_id] = {"name": f"batches/{batch_id}", "model": f"models/{req.params['model']}",
                                      "displayName": batch.get("displayName"), "requests": items,
                                      "state": "BATCH_STATE_PENDING", "polls": 0, "output": None,
                                      "createTime": _now()}
            return json_reply(self._operation(self.batches[batch_id]))

    def get_batch(self, req: FakeRequest) -> Reply:
        if (denied := self._denied(req)) is not None:
            return denied
        with self.lock:
            batch = self.batches.get(req.params["batch_id"])
            if batch is None:
                return _google_error(404, f"Batch batches/{req.params['batch_id']} not found (fake).", "NOT_FOUND",
                                     "NOT_FOUND")
            if batch["state"] in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"):
                batch["polls"] += 1
                if batch["polls"] > self.batch_polls:
                    self._finish(batch)
                else:
                    batch["state"] = "BATCH_STATE_RUNNING"
            return json_reply(self._operation(batch))

    def _finish(self, batch: dict) -> None:
        batch["state"], batch["endTime"] = self.batch_end, _now()
        if self.batch_end != "BATCH_STATE_SUCCEEDED":
            return
        out = []
        for n, item in enumerate(batch["requests"]):
            reply = self.answer(item.get("request"), None, batch["model"].removeprefix("models/"), n)
            answer = json.loads(reply.body)
            entry = {"response": answer} if reply.status == 200 else {"error": answer.get("error", answer)}
            if item.get("metadata") is not None:
                entry["metadata"] = item["metadata"]
            out.append(entry)
        batch["output"] = {"inlinedResponses": {"inlinedResponses": out[::-1] if self.batch_reverse else out}}

    @staticmethod
    def _operation(batch: dict) -> dict:
        meta = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
                "name": batch["name"], "model": batch["model"], "state": batch["state"],
                "createTime": batch["createTime"], "updateTime": _now(),
                "batchStats": {"requestCount": str(len(batch["requests"]))}}
        if batch.get("displayName"):
            meta["displayName"] = batch["displayName"]
        if batch.get("endTime"):
            meta["endTime"] = batch["endTime"]
        if batch["output"] is not None:
            meta["output"] = batch["output"]
        done = batch["state"] not in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING")
        return {"name": batch["name"], "metadata": meta, "done": done}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
