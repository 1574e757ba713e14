"""duo's capture hook for the LiteLLM proxy: each request/response, served or shadow, one JSON line.

``duo rollout`` copies this file beside the proxy config as ``duo_capture.py``; the config names
``duo_capture.handler`` under ``litellm_settings.callbacks``. It runs inside the proxy's own Python, so
it imports nothing of duo: its settings come from ``duo_capture.json`` beside it (``traffic``: the
folder, ``gateway``, the model groups), and ``DUO_TRAFFIC`` overrides the folder.

A line (the contract in docs/rollout.md): ``{"request": <the client's body>, "response": <the
chat.completion, or null on error>, "duo": {"id", "group", "role": served|shadow, "deployment":
student|service, "model", "gateway", "ts", "latency_s", "error", "fallback", "usage"}}`` appended to
``<traffic>/<YYYY-MM-DD>/litellm-<host>-<pid>.jsonl``. ``group`` is set once per client request by
the pre-call hook and travels in the request's metadata to its mirrored copy (LiteLLM copies the
metadata into the silent call). Every attempt is a line: a student's error, then the service's
answer marked ``fallback: true``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import threading
import uuid
from pathlib import Path

try:
    from litellm.integrations.custom_logger import CustomLogger
except ImportError:  # read by duo's own tests and import checks, where litellm is not installed
    CustomLogger = object

SETTINGS = Path(__file__).with_name("duo_capture.json")
GROUP_KEY = "duo_group"


def _settings() -> dict:
    try:
        return json.loads(SETTINGS.read_text())
    except (OSError, ValueError):
        return {}


def _plain(obj):
    """A response object as a JSON-able dict."""
    if obj is None or isinstance(obj, (dict, list, str, int, float, bool)):
        return obj
    for name in ("model_dump", "dict", "json"):
        fn = getattr(obj, name, None)
        if callable(fn):
            try:
                out = fn()
                return json.loads(out) if isinstance(out, str) else out
            except Exception:  # noqa: BLE001, S112 - try the next way of dumping it
                continue
    return str(obj)


def _utc(t) -> _dt.datetime:
    if isinstance(t, _dt.datetime):
        return t.astimezone(_dt.timezone.utc) if t.tzinfo else t.astimezone().astimezone(_dt.timezone.utc)
    return _dt.datetime.fromtimestamp(float(t), tz=_dt.timezone.utc)


def _one_line(exc) -> str:
    text = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else str(exc)
    return " ".join(text.split())[:500]


class DuoCapture(CustomLogger):
    """Appends one line per chat completion attempt to the traffic folder (see the module docstring)."""

    def __init__(self, settings: dict | None = None):
        if CustomLogger is not object:
            super().__init__()
        self.settings = settings if settings is not None else _settings()
        self.folder = Path(os.environ.get("DUO_TRAFFIC") or self.settings.get("traffic") or "traffic")
        self.gateway = self.settings.get("gateway", "litellm")
        self.student_ids = set(self.settings.get("student_ids") or [])
        self.lock = threading.Lock()
        self.name = f"{self.gateway}-{socket.gethostname()}-{os.getpid()}.jsonl"

    # -- the proxy's hooks ---------------------------------------------------------------------------
    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        """Give the client's request its group id (copied into the mirrored call's metadata)."""
        if isinstance(data, dict):
            meta = data.get("metadata")
            if not isinstance(meta, dict):
                meta = data["metadata"] = {}
            meta.setdefault(GROUP_KEY, uuid.uuid4().hex)
        return data

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self.write(kwargs, response_obj, start_time, end_time, None)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self.write(kwargs, None, start_time, end_time, kwargs.get("exception") or response_obj)

    # -- the line ------------------------------------------------------------------------------------
    def entry(self, kwargs: dict, response, start_time, end_time, error) -> dict | None:
        params = kwargs.get("litellm_params") or {}
        meta = params.get("metadata") or kwargs.get("metadata") or {}
        info = params.get("model_info") or meta.get("model_info") or {}
        deployment = info.get("duo_deployment")
        if deployment not in ("student", "service"):
            return None  # not one of duo's deployments (a health check, another model)
        body = (params.get("proxy_server_request") or {}).get("body")
        request = dict(body) if isinstance(body, dict) else {"messages": kwargs.get("messages")}
        for key in [k for k in request if k.lstrip("_").startswith("litellm_") or k == "metadata"]:
            request.pop(key)  # the proxy's own additions (its metadata holds the request's headers)
        shadow = bool(meta.get("is_silent_experiment"))
        group = meta.get(GROUP_KEY) or kwargs.get("litellm_call_id") or uuid.uuid4().hex
        start = _utc(start_time)
        latency = max(0.0, (_utc(end_time) - start).total_seconds())
        reply = _plain(response) if error is None else None
        usage = reply.get("usage") if isinstance(reply, dict) else None
        model = str(params.get("model") or kwargs.get("model") or "")
        return {"request": request, "response": reply,
                "duo": {"id": uuid.uuid4().hex, "group": group,
                        "role": "shadow" if shadow else "served",
                        "deployment": deployment,
                        "model": info.get("duo_model") or model.split("/", 1)[-1],
                        "gateway": self.gateway,
                        "ts": start.isoformat().replace("+00:00", "Z"),
                        "latency_s": round(latency, 4),
                        "error": None if error is None else _one_line(error),
                        "fallback": not shadow and deployment == "service" and self.after_student(meta),
                        "usage": None if not isinstance(usage, dict) else {
                            "prompt_tokens": usage.get("prompt_tokens"),
                            "completion_tokens": usage.get("completion_tokens")}}}

    def after_student(self, meta: dict) -> bool:
        """True when an earlier attempt of this request went to the student (LiteLLM's retry breadcrumbs)."""
        earlier = meta.get("previous_models") or []
        return any(isinstance(p, dict) and p.get("deployment_id") in self.student_ids for p in earlier)

    def write(self, kwargs, response, start_time, end_time, error) -> None:
        try:
            line = self.entry(kwargs, response, start_time, end_time, error)
            if line is None:
                return
            day = line["duo"]["ts"][:10]
            folder = self.folder / day
            with self.lock:
                folder.mkdir(parents=True, exist_ok=True)
                with open(folder / self.name, "a", encoding="utf-8") as out:
                    out.write(json.dumps(line, default=str, ensure_ascii=False) + "\n")
        except Exception as exc:  # noqa: BLE001 - a logging hook must never break the proxy's answer
            print(f"duo_capture: could not write a traffic line: {_one_line(exc)}", flush=True)


handler = DuoCapture()
