"""A fake OpenAI API that the real ``openai`` SDK talks to (``base_url=fake.url + "/v1"``).

Routes: ``POST /v1/chat/completions``, ``GET /v1/models``, and the Batch API (``POST /v1/files``,
``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches/{id}``; a batch
completes when it is polled, each line answered by the responder, faults not applied inside a batch).

- ``set_responder(fn)``: ``fn(body: dict) -> str | dict | Reply`` gives the assistant content (a dict is
  JSON-dumped; a ``Reply`` is sent as is, e.g. a 400 for one item). The default echoes the last user message, or,
  when ``response_format`` carries a JSON schema, returns ``schema_example(schema)``.
- Tokens are whitespace-separated words: prompt = words of every message, completion = words of the content.
  ``max_tokens``/``max_completion_tokens`` cut the content to that many words with ``finish_reason: "length"``.
  ``finish_reason`` (a str, or ``fn(body) -> str | None``) sends that finish_reason with the uncut content.
- ``api_key``: the bearer token it accepts (401 otherwise). ``reported``: totals of the usage it replied with
  (``requests``, ``prompt_tokens``, ``completion_tokens``), sync and batch.
- Stored completions: a chat completion sent with ``store: true`` is kept with its ``metadata`` and input turns;
  ``GET /v1/chat/completions`` lists them (``metadata[key]=value`` and ``model`` filters, cursor pages of ``limit``
  (20) after ``after``, ``order`` asc) and ``GET /v1/chat/completions/{id}/messages`` lists one's turns, paged alike.
- A ``schema_violation`` fault answers ``{"violation": "fake"}`` instead of asking the responder.
- ``set_rate_limit(rpm=None, period=60.0, fault_bucket=None, tpm=None)``: with ``rpm``, a chat completion beyond
  ``rpm`` accepted in the last ``period`` seconds is refused as OpenAI refuses it: 429, ``type: "requests"``, code
  ``rate_limit_exceeded``, the message "... on requests per min (RPM): Limit N, Used N, Requested 1. Please try
  again in Xs.", ``Retry-After``/``retry-after-ms`` = the time until the window has room, and ``x-ratelimit-*``
  headers (the log's ``fault`` says ``over_limit``). With ``tpm``, one whose prompt does not fit beside the
  tokens of the last ``period``'s answers is refused the same way for ``tokens``. ``fault_bucket``
  (``"requests"`` or ``"tokens"``) gives the injected 429 faults (``set_faults(rate_429=...)``) the same shape
  for that bucket, with the fault's Retry-After. ``count_refused``: refused chat completions (injected 429s and
  those over the limit) count against ``rpm`` too, as OpenAI documents ("unsuccessful requests contribute to your
  per-minute limit"); by default only accepted ones count.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections import Counter, deque

from .http_base import FakeRequest, FakeServer, Reply, bytes_reply, error_reply, json_reply

FAKE_OPENAI_KEY = "sk-fake-openai-key"


def count_words(text: str) -> int:
    return len(text.split())


def message_text(content) -> str:
    """The text of a chat message's content (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def schema_example(schema: dict, root: dict | None = None):
    """A small instance of a JSON Schema (objects, arrays, strings, numbers, enums, $ref to $defs)."""
    root = root or schema
    if "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return schema_example(node, root)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return schema_example(schema[key][0], root)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: schema_example(sub, root) for name, sub in props.items()}
    if kind == "array":
        return [schema_example(schema.get("items", {"type": "string"}), root)
                for _ in range(max(1, schema.get("minItems", 1)))]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        high = schema.get("maximum", low + 100)
        value = (low + high) // 2 if kind == "integer" else (low + high) / 2
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "x" * max(1, schema.get("minLength", 0)) if schema.get("minLength") else "example text"


def _openai_schema(body: dict) -> dict | None:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return (fmt.get("json_schema") or {}).get("schema")
    return None


class FakeOpenAI(FakeServer):
    """See the module docstring."""

    def __init__(self):
        super().__init__()
        self.api_key = FAKE_OPENAI_KEY
        self.route("POST", r"/v1/chat/completions", self.chat_completions)
        self.route("GET", r"/v1/models", self.models)
        self.route("POST", r"/v1/files", self.upload_file)
        self.route("GET", r"/v1/files/(?P<file_id>[^/]+)", self.get_file)
        self.route("GET", r"/v1/files/(?P<file_id>[^/]+)/content", self.file_content)
        self.route("POST", r"/v1/batches", self.create_batch)
        self.route("GET", r"/v1/batches/(?P<batch_id>[^/]+)", self.get_batch)
        self.route("GET", r"/v1/chat/completions", self.list_stored)
        self.route("GET", r"/v1/chat/completions/(?P<completion_id>[^/]+)/messages", self.stored_messages)

    def reset_state(self) -> None:
        self.api_key = FAKE_OPENAI_KEY
        self.responder = self.default_responder
        self.finish_reason = None  # a str, or fn(body) -> str | None: the finish_reason sent instead of "stop"
        self.reported: Counter = Counter()
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.stored: list[dict] = []  # chat completions created with store: true, with their input messages
        self._ids = itertools.count(1)
        self.set_rate_limit()

    def set_rate_limit(self, rpm: float | None = None, period: float = 60.0, fault_bucket: str | None = None,
                       tpm: float | None = None, count_refused: bool = False) -> None:
        with self.lock:
            self.limit_rpm, self.limit_period, self.fault_bucket = rpm, period, fault_bucket
            self.limit_tpm, self.count_refused = tpm, count_refused
            self._accepted: deque[float] = deque()
            self._tokens: deque[tuple[float, int]] = deque()  # (time, prompt + completion tokens) of answers

    def rate_limited(self, bucket: str, wait_s: float, model: str = "gpt-4o") -> Reply:
        """A 429 as OpenAI sends it for ``bucket`` (``"requests"`` or ``"tokens"``), to retry in ``wait_s``."""
        limit = int(self.limit_rpm or 0) if bucket == "requests" else 0
        which = "requests per min (RPM)" if bucket == "requests" else "tokens per min (TPM)"
        headers = {"Retry-After": str(max(0, math.ceil(wait_s))), "retry-after-ms": str(max(0, round(wait_s * 1000))),
                   f"x-ratelimit-limit-{bucket}": str(limit), f"x-ratelimit-remaining-{bucket}": "0",
                   f"x-ratelimit-reset-{bucket}": f"{wait_s:.3f}s"}
        return json_reply({"error": {"message": f"Rate limit reached for {model} in organization org-fake on {which}: "
                                                f"Limit {limit}, Used {limit}, Requested 1. Please try again in "
                                                f"{wait_s:.3f}s. (fake)",
                                     "type": bucket, "param": None, "code": "rate_limit_exceeded"}},
                          status=429, headers=headers)

    def _apply_faults(self, req: FakeRequest) -> Reply | None:
        reply = super()._apply_faults(req)
        if (reply is not None and reply.status == 429 and self.count_refused and self.limit_rpm
                and req.method == "POST" and req.path == "/v1/chat/completions"):
            with self.lock:
                self._accepted.append(time.monotonic())
        if reply is not None and reply.status == 429 and self.fault_bucket:
            return self.rate_limited(self.fault_bucket, float(self.faults["retry_after"]))
        return reply

    def _over_limit(self, req: FakeRequest) -> Reply | None:
        """The 429 of a chat completion that the request limit does not allow now, else None (it is counted)."""
        if self.limit_tpm:
            refused = self._over_tokens(req)
            if refused is not None:
                return refused
        if not self.limit_rpm:
            return None
        now = time.monotonic()
        with self.lock:
            while self._accepted and self._accepted[0] <= now - self.limit_period:
                self._accepted.popleft()
            if len(self._accepted) < self.limit_rpm:
                self._accepted.append(now)
                return None
            wait = self._accepted[-int(self.limit_rpm)] + self.limit_period - now
            if self.count_refused:
                self._accepted.append(now)
            self.fault_counts["over_limit"] += 1
        req.fault = "over_limit"
        return self.rate_limited("requests", wait, (req.body or {}).get("model", "gpt-4o"))

    def _over_tokens(self, req: FakeRequest) -> Reply | None:
        """The 429 of a chat completion whose prompt does not fit the token limit now (the tokens of the
        answers of the last ``period`` plus its prompt's), else None."""
        asked = sum(count_words(message_text(m.get("content"))) for m in (req.body or {}).get("messages", []))
        now = time.monotonic()
        with self.lock:
            while self._tokens and self._tokens[0][0] <= now - self.limit_period:
                self._tokens.popleft()
            used = sum(n for _, n in self._tokens)
            if used + asked <= self.limit_tpm:
                return None
            for t, n in self._tokens:
                used -= n
                if used + asked <= self.limit_tpm:
                    break
            wait = t + self.limit_period - now
            self.fault_counts["over_limit"] += 1
        req.fault = "over_limit"
        return self.rate_limited("tokens", wait, (req.body or {}).get("model", "gpt-4o"))

    def set_responder(self, fn) -> None:
        self.responder = fn

    @staticmethod
    def default_responder(body: dict):
        schema = _openai_schema(body)
        if schema is not None:
            return schema_example(schema)
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        return message_text(users[-1]["content"]) if users else ""

    def _next_id(self, prefix: str) -> str:
        with self.lock:
            return f"{prefix}-{next(self._ids):06d}"

    def _authorized(self, req: FakeRequest) -> Reply | None:
        if req.header("authorization") != f"Bearer {self.api_key}":
            return json_reply({"error": {"message": "Incorrect API key provided (fake).", "type": "invalid_request_error",
                                         "param": None, "code": "invalid_api_key"}}, status=401)
        return None

    # -- chat ------------------------------------------------------------------------------------------------
    def complete(self, body: dict, fault: str | None = None) -> Reply:
        """Answer one chat completion body (used by the sync route and by batches)."""
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body.get("model"):
            return error_reply(400, "body must be JSON with 'model' and 'messages'", type="invalid_request_error")
        content = {"violation": "fake"} if fault == "schema_violation" else self.responder(body)
        if isinstance(content, Reply):
            return content
        if not isinstance(content, str):
            content = json.dumps(content)
        forced = self.finish_reason(body) if callable(self.finish_reason) else self.finish_reason
        finish = forced or "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        words = content.split()
        if limit is not None and len(words) > limit:
            content, finish = " ".join(words[:limit]), "length"
        prompt_tokens = sum(count_words(message_text(m.get("content"))) for m in body["messages"])
        completion_tokens = count_words(content)
        with self.lock:
            self.reported["requests"] += 1
            self.reported["prompt_tokens"] += prompt_tokens
            self.reported["completion_tokens"] += completion_tokens
            if self.limit_tpm:
                self._tokens.append((time.monotonic(), prompt_tokens + completion_tokens))
        return json_reply({
            "id": self._next_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()),
            "model": body["model"], "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                         "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })

    def chat_completions(self, req: FakeRequest) -> Reply:
        reply = self._authorized(req) or self._over_limit(req) or self.complete(req.body, req.fault)
        if reply.status == 200 and isinstance(req.body, dict) and req.body.get("store"):
            with self.lock:  # stored as OpenAI stores it: the completion, its metadata and its input turns
                self.stored.append({"completion": {**json.loads(reply.body), "metadata": req.body.get("metadata") or {},
                                                   "request_id": f"req_{len(self.stored)}"},
                                    "messages": list(req.body["messages"])})
        return reply

    # -- stored completions ------------------------------------------------------------------------------------
    @staticmethod
    def _page(items: list[dict], req: FakeRequest) -> dict:
        """A cursor page as OpenAI lists one: ``order`` (asc by default), ``after`` (an id), ``limit`` (20)."""
        if req.query.get("order", "asc") == "desc":
            items = items[::-1]
        if (after := req.query.get("after")) is not None:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        limit = int(req.query.get("limit") or 20)
        page = items[:limit]
        return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit}

    def list_stored(self, req: FakeRequest) -> Reply:
        """``GET /v1/chat/completions``: stored completions, filtered by ``model`` and ``metadata[key]=value``."""
        if (denied := self._authorized(req)) is not None:
            return denied
        wanted = {k[len("metadata["):-1]: v for k, v in req.query.items() if k.startswith("metadata[")}
        with self.lock:
            items = [s["completion"] for s in self.stored
                     if all(s["completion"]["metadata"].get(k) == v for k, v in wanted.items())
                     and req.query.get("model") in (None, s["completion"]["model"])]
        return json_reply(self._page(items, req))

    def stored_messages(self, req: FakeRequest) -> Reply:
        """``GET /v1/chat/completions/{id}/messages``: a stored completion's input turns."""
        if (denied := self._authorized(req)) is not None:
            return denied
        cid = req.params["completion_id"]
        found = next((s for s in self.stored if s["completion"]["id"] == cid), None)
        if found is None:
            return error_reply(404, f"No chat completion found with id '{cid}'.")
        turns = [{"id": f"{cid}-{i}", "role": m.get("role"), "content": m.get("content"), "name": m.get("name"),
                  "content_parts": None} for i, m in enumerate(found["messages"])]
        return json_reply(self._page(turns, req))

    def models(self, req: FakeRequest) -> Reply:
        return self._authorized(req) or json_reply({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "fake"} for name in ("gpt-4o", "gpt-4o-mini")]})

    # -- files and batches -----------------------------------------------------------------------------------
    def _file_object(self, file_id: str) -> dict:
        f = self.files[file_id]
        return {"id": file_id, "object": "file", "bytes": len(f["data"]), "created_at": f["created_at"],
                "filename": f["filename"], "purpose": f["purpose"], "status": "processed"}

    def _store_file(self, data: bytes, filename: str, purpose: str) -> str:
        file_id = self._next_id("file")
        with self.lock:
            self.files[file_id] = {"data": data, "filename": filename, "purpose": purpose,
                                   "created_at": int(time.time())}
        return file_id

    def upload_file(self, req: FakeRequest) -> Reply:
        if (denied := self._authorized(req)) is not None:
            return denied
        parts = req.multipart()
        if "file" not in parts or "purpose" not in parts:
            return error_reply(400, "multipart body needs 'file' and 'purpose'")
        file_id = self._store_file(parts["file"]["data"], parts["file"]["filename"] or "upload.jsonl",
                                   parts["purpose"]["data"].decode())
        return json_reply(self._file_object(file_id))

    def get_file(self, req: FakeRequest) -> Reply:
        if (denied := self._authorized(req)) is not None:
            return denied
        if req.params["file_id"] not in self.files:
            return error_reply(404, f"No such File object: {req.params['file_id']}")
        return json_reply(self._file_object(req.params["file_id"]))

    def file_content(self, req: FakeRequest) -> Reply:
        if (denied := self._authorized(req)) is not None:
            return denied
        f = self.files.get(req.params["file_id"])
        if f is None:
            return error_reply(404, f"No such File object: {req.params['file_id']}")
        return bytes_reply(f["data"], content_type="application/octet-stream")

    def create_batch(self, req: FakeRequest) -> Reply:
        if (denied := self._authorized(req)) is not None:
            return denied
        body = req.body if isinstance(req.body, dict) else {}
        if body.get("input_file_id") not in self.files:
            return error_reply(400, f"input_file_id {body.get('input_file_id')!r} not found")
        batch_id = self._next_id("batch")
        batch = {"id": batch_id, "object": "batch", "endpoint": body.get("endpoint", "/v1/chat/completions"),
                 "errors": None, "input_file_id": body["input_file_id"],
                 "completion_window": body.get("completion_window", "24h"), "status": "validating",
                 "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
                 "in_progress_at": None, "completed_at": None, "metadata": body.get("metadata"),
                 "request_counts": {"total": 0, "completed": 0, "failed": 0}}
        with self.lock:
            self.batches[batch_id] = batch
        return json_reply(batch)

    def _run_batch(self, batch: dict) -> None:
        lines = self.files[batch["input_file_id"]]["data"].decode().splitlines()
        out, counts = [], Counter()
        for n, line in enumerate(filter(str.strip, lines)):
            item = json.loads(line)
            reply = self.complete(item.get("body"))
            counts["completed" if reply.status == 200 else "failed"] += 1
            out.append(json.dumps({"id": f"batch_req_{n}", "custom_id": item.get("custom_id"),
                                   "response": {"status_code": reply.status, "request_id": f"req_{n}",
                                                "body": json.loads(reply.body)},
                                   "error": None}))
        batch["output_file_id"] = self._store_file(("\n".join(out) + "\n").encode(), "batch_output.jsonl",
                                                   "batch_output")
        batch["request_counts"] = {"total": len(out), "completed": counts["completed"], "failed": counts["failed"]}
        batch["status"] = "completed"
        batch["in_progress_at"] = batch["completed_at"] = int(time.time())

    def get_batch(self, req: FakeRequest) -> Reply:
        if (denied := self._authorized(req)) is not None:
            return denied
        batch = self.batches.get(req.params["batch_id"])
        if batch is None:
            return error_reply(404, f"No such Batch object: {req.params['batch_id']}")
        with self.lock:
            if batch["status"] == "validating":
                self._run_batch(batch)
        return json_reply(batch)
