"""Reusable base of the fake HTTP services (OpenAI, Gemini, Hub, GitHub) that tests point the real SDKs at.

A ``FakeServer`` is a stdlib ``ThreadingHTTPServer`` (HTTP/1.1, keep-alive) on 127.0.0.1, port 0, served from a
daemon thread. Subclasses add routes in ``__init__`` and keep their state in attributes they clear in
``reset_state()``::

    class FakeThing(FakeServer):
        def __init__(self):
            super().__init__()
            self.route("GET", r"/api/items/(?P<item>[^/]+)", self.get_item)

        def reset_state(self):
            self.items = {}

        def get_item(self, req: FakeRequest) -> Reply:
            if req.params["item"] not in self.items:
                return json_reply({"error": "not found"}, status=404, headers={"X-Error-Code": "EntryNotFound"})
            return json_reply(self.items[req.params["item"]])

    server = FakeThing().start()     # .url == "http://127.0.0.1:PORT"
    ...
    server.stop()

API:
- ``start() -> self``, ``stop()``, ``url``, ``reset()`` (clears the log, the faults, the hooks, then calls
  ``reset_state()``), ``route(method, pattern, handler)`` (``pattern`` is a regex matched in full against the
  path without the query; named groups land in ``req.params``; routes are tried in the order added).
- A handler takes a ``FakeRequest`` and returns a ``Reply`` (build it with ``json_reply``, ``bytes_reply`` or
  ``error_reply``), or a dict/list which is sent as JSON with status 200.
- ``FakeRequest``: ``method``, ``path``, ``query`` (name -> last value), ``query_all`` (name -> list),
  ``headers`` (lower-cased names), ``raw`` (body bytes), ``body`` (parsed JSON when the body is JSON, else the
  text when it decodes as UTF-8, else the bytes), ``params`` (regex groups), ``host_url`` (``http://`` + the
  Host header, for URLs in replies that clients check), ``fault`` (``"schema_violation"`` when the subclass
  should produce structured output that breaks its schema, else None), ``header(name, default)``,
  ``multipart()`` (the parts of a multipart/form-data body: name -> ``{"filename", "content_type", "data"}``).
- ``log``: a list of dicts, one per request in arrival order: ``method``, ``path``, ``query``, ``headers``,
  ``body``, ``status`` (None until the reply is sent), ``t`` (``time.monotonic()`` at arrival), ``fault``.
  Guarded by ``lock``; use ``requests(method=None, path=None)`` for a filtered copy.
- ``set_faults(rate_429=0.0, rate_500=0.0, rate_malformed=0.0, rate_schema_violation=0.0, latency_s=0.0,
  hang_s=0.0, rate_hang=1.0, retry_after=1, seed=0, only_paths=None)``: applied before routing. Each request draws
  one number that depends only on the seed, the method, the path, the body and how many times that same request
  was seen before, so a run is reproducible whatever order concurrent requests arrive in, and a retried request
  gets a fresh draw. 429 carries ``Retry-After`` (and ``retry-after-ms``); 500 is a JSON error; malformed is a 200
  whose body is not valid JSON (``malformed_reply()`` may be overridden); schema violation just marks the
  request for the handler. ``latency_s`` delays every (matching) reply; ``hang_s`` sleeps that long before
  answering a ``rate_hang`` share of requests (make it longer than the client timeout). ``only_paths`` is a list
  of regexes searched in the path; faults then hit only matching paths. ``rate_drop`` is a share of the requests
  (drawn independently of the others, among those no other fault refused) that the handler answers, as it would
  bill them, and whose connection then closes before the reply is sent: a dropped connection after the send.
  ``fault_counts`` counts what was injected.
- ``add_hook(fn)``: ``fn(req) -> Reply | None`` runs before routing (after faults); a Reply short-circuits.
- ``windows_exceeded(times, limit, period)``: how far the busiest window of a log's ``t`` values goes over a rate
  limit (<= 0: within it).
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import hashlib
import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    """An HTTP reply: status, body bytes and headers (Content-Length is added when sent)."""

    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)


def json_reply(obj: Any, status: int = 200, headers: dict | None = None) -> Reply:
    """A JSON reply."""
    return Reply(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})


def bytes_reply(data: bytes | str, status: int = 200, content_type: str = "application/octet-stream",
                headers: dict | None = None) -> Reply:
    """A raw reply (text is UTF-8 encoded)."""
    if isinstance(data, str):
        data = data.encode()
    return Reply(status, data, {"Content-Type": content_type, **(headers or {})})


def error_reply(status: int, message: str, headers: dict | None = None, **extra) -> Reply:
    """A JSON error in the shape OpenAI and Google use: ``{"error": {"message", "code", ...}}``."""
    return json_reply({"error": {"message": message, "code": status, **extra}}, status=status, headers=headers)


def windows_exceeded(times: list[float], limit: float, period: float) -> int:
    """The largest number of ``times`` in any half-open window ``[t, t + period)``, minus ``limit`` (<= 0: fine)."""
    times = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - period:
            start += 1
        most = max(most, end - start + 1)
    return most - int(limit)


@dataclass
class FakeRequest:
    """One request as a handler sees it."""

    method: str
    path: str
    query: dict
    query_all: dict
    headers: dict
    raw: bytes
    body: Any
    host_url: str
    params: dict = field(default_factory=dict)
    fault: str | None = None
    drop_draw: float = 1.0

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def multipart(self) -> dict:
        """Parts of a multipart/form-data body: name -> {"filename", "content_type", "data"}."""
        head = f"Content-Type: {self.header('content-type', '')}\r\n\r\n".encode()
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + self.raw)
        parts = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            parts[name] = {"filename": part.get_filename(), "content_type": part.get_content_type(),
                           "data": part.get_payload(decode=True) or b""}
        return parts


def _parse_body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if "json" in content_type:
        try:
            return json.loads(raw)
        except ValueError:
            pass
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


class FakeServer:
    """Base fake service; see the module docstring."""

    def __init__(self):
        self.lock = threading.RLock()
        self._routes: list[tuple[str, re.Pattern, Callable]] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.log: list[dict] = []
        self.hooks: list[Callable] = []
        self.fault_counts: Counter = Counter()
        self._seen: Counter = Counter()
        self.faults: dict = {}
        self.set_faults()
        self.reset_state()

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> FakeServer:
        if self._httpd is not None:
            return self
        server = self

        class Handler(_Handler):
            fake = server

        httpd = _QuietServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False  # a hanging handler must not block stop()
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def reset(self) -> None:
        """Forget the log, faults, hooks and the subclass's state."""
        with self.lock:
            self.log.clear()
            self.hooks.clear()
            self.fault_counts.clear()
            self._seen.clear()
            self.set_faults()
            self.reset_state()

    def reset_state(self) -> None:
        """Subclasses clear their own state here (called by ``__init__`` and ``reset``)."""

    # -- configuration ---------------------------------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Callable[[FakeRequest], Any]) -> None:
        self._routes.append((method.upper(), re.compile(pattern), handler))

    def add_hook(self, fn: Callable[[FakeRequest], Reply | None]) -> None:
        with self.lock:
            self.hooks.append(fn)

    def set_faults(self, rate_429: float = 0.0, rate_500: float = 0.0, rate_malformed: float = 0.0,
                   rate_schema_violation: float = 0.0, latency_s: float = 0.0, hang_s: float = 0.0,
                   rate_hang: float = 1.0, retry_after: float = 1, seed: int = 0,
                   only_paths: list[str] | None = None, rate_drop: float = 0.0) -> None:
        rates = rate_429 + rate_500 + rate_malformed + rate_schema_violation
        if rates > 1:
            raise ValueError(f"fault rates add up to {rates} > 1")
        with self.lock:
            self.faults = {"rate_429": rate_429, "rate_500": rate_500, "rate_malformed": rate_malformed,
                           "rate_schema_violation": rate_schema_violation, "latency_s": latency_s, "hang_s": hang_s,
                           "rate_hang": rate_hang, "rate_drop": rate_drop, "retry_after": retry_after,
                           "seed": seed,
                           "only_paths": [re.compile(p) for p in only_paths] if only_paths else None}

    def requests(self, method: str | None = None, path: str | None = None) -> list[dict]:
        """A copy of the log, filtered by method and by a regex searched in the path."""
        with self.lock:
            return [dict(e) for e in self.log
                    if (method is None or e["method"] == method) and (path is None or re.search(path, e["path"]))]

    # -- overridable replies ---------------------------------------------------------------------------------
    def malformed_reply(self, req: FakeRequest) -> Reply:
        return bytes_reply(b'{"id": "broken", "choices": [', content_type="application/json")

    def not_found(self, req: FakeRequest) -> Reply:
        return error_reply(404, f"no route for {req.method} {req.path}")

    # -- dispatch --------------------------------------------------------------------------------------------
    def _draw(self, req: FakeRequest) -> float:
        """A uniform number from the seed and the request's identity and repeat count (order-independent)."""
        ident = hashlib.sha256(b"\0".join([req.method.encode(), req.path.encode(), req.raw])).hexdigest()
        with self.lock:
            self._seen[ident] += 1
            nth = self._seen[ident]
            seed = self.faults["seed"]
        digest = hashlib.sha256(f"{seed}:{ident}:{nth}".encode()).digest()
        req.drop_draw = int.from_bytes(digest[8:16], "big") / 2**64  # a second, independent number
        return int.from_bytes(digest[:8], "big") / 2**64

    def _apply_faults(self, req: FakeRequest) -> Reply | None:
        f = self.faults
        if f["only_paths"] is not None and not any(p.search(req.path) for p in f["only_paths"]):
            return None
        u = self._draw(req)
        if f["latency_s"]:
            time.sleep(f["latency_s"])
        if f["hang_s"] and u < f["rate_hang"]:
            with self.lock:
                self.fault_counts["hang"] += 1
            time.sleep(f["hang_s"])
        edge = 0.0
        for kind in ("429", "500", "malformed", "schema_violation"):
            edge += f[f"rate_{kind}"]
            if u < edge:
                break
        else:
            if req.drop_draw < f["rate_drop"]:
                with self.lock:
                    self.fault_counts["drop"] += 1
                req.fault = "drop"  # answered (and billed) by the handler, then never sent
            return None
        with self.lock:
            self.fault_counts[kind] += 1
        req.fault = kind
        if kind == "429":
            ra = f["retry_after"]
            headers = {"Retry-After": str(int(ra)) if float(ra).is_integer() else str(ra),
                       "retry-after-ms": str(int(float(ra) * 1000))}
            return error_reply(429, "Rate limit reached (fake)", headers=headers)
        if kind == "500":
            return error_reply(500, "Internal error (fake)")
        if kind == "malformed":
            return self.malformed_reply(req)
        return None  # schema_violation: the handler sees req.fault

    def handle(self, req: FakeRequest) -> Reply:
        reply = self._apply_faults(req)
        if reply is not None:
            return reply
        for hook in list(self.hooks):
            reply = hook(req)
            if reply is not None:
                return reply
        for method, pattern, handler in self._routes:
            if method != req.method:
                continue
            m = pattern.fullmatch(req.path)
            if m:
                req.params = m.groupdict()
                out = handler(req)
                return out if isinstance(out, Reply) else json_reply(out)
        return self.not_found(req)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A client that hung up (timed out, was killed) is expected in these tests; anything else is printed."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeServer

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:
            raise ConnectionAbortedError("client went away mid-body")  # never fully sent: not logged
        return raw

    def _serve(self):
        t = time.monotonic()
        raw = self._read_body()
        parts = urlsplit(self.path)
        query_all = parse_qs(parts.query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = FakeRequest(method=self.command, path=parts.path, query={k: v[-1] for k, v in query_all.items()},
                          query_all=query_all, headers=headers, raw=raw,
                          body=_parse_body(raw, headers.get("content-type", "")),
                          host_url=f"http://{headers.get('host', '127.0.0.1')}")
        entry = {"method": req.method, "path": req.path, "query": req.query, "headers": headers, "body": req.body,
                 "status": None, "t": t, "fault": None}
        with self.fake.lock:
            self.fake.log.append(entry)
        try:
            reply = self.fake.handle(req)
        except Exception as exc:  # noqa: BLE001 - a bug in a fake must show up as a 500 in the test, not a hung client
            reply = error_reply(500, f"fake server error: {type(exc).__name__}: {exc}")
        with self.fake.lock:
            entry["status"] = reply.status
            entry["fault"] = req.fault
        if req.fault == "drop":  # the connection drops after the work is done: the client gets no reply
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            self.send_response(reply.status)
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. timed out on a hang)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve
