"""Portkey's open-source gateway config for the canary (``npx @portkey-ai/gateway``).

A ``loadbalance`` of two targets: the student with weight ``w`` (itself a ``fallback`` from the student
to the service: any non-2xx, a refused connection, or no reply within ``request_timeout``) and the
service with ``1 - w``. The gateway takes the config per request, in the ``x-portkey-config`` header;
API keys are written as ``${VAR}`` (the file is safe to commit) and filled in with ``envsubst`` where
the header is built. Portkey has no mirror and no Python hook: no shadow copies, no capture (the
servers' own logs or the client count the split).
"""

from __future__ import annotations

from ..config import Config
from ..errors import DuoError

PROVIDERS = {"openai": "openai", "gemini": "google"}


def _key(env: str | None) -> str:
    return "${" + env + "}" if env else "none"


def service_target(cfg: Config) -> dict:
    svc = cfg.service.synthesize
    if svc is None:
        raise DuoError("rollout: service.synthesize is not configured; expected the service LLM "
                       "the student is canaried against")
    target = {"provider": PROVIDERS[svc.provider], "api_key": _key(svc.api_key_env),
              "override_params": {"model": svc.model}}
    if svc.base_url:
        target["custom_host"] = svc.base_url.rstrip("/")
    return target


def student_target(cfg: Config) -> dict:
    st = cfg.rollout.student
    return {"provider": "openai", "custom_host": st.base_url.rstrip("/"), "api_key": _key(st.api_key_env),
            "override_params": {"model": st.model or cfg.task.name},
            "request_timeout": round(cfg.rollout.timeout_s * 1000)}


def gateway_config(cfg: Config, weight: float) -> dict:
    """The config as a dict (written as JSON) for student weight ``weight`` in [0, 1]."""
    service = service_target(cfg)
    if weight <= 0:
        return service
    student = {"strategy": {"mode": "fallback"}, "targets": [student_target(cfg), service]}
    if weight >= 1:
        return student
    return {"strategy": {"mode": "loadbalance"},
            "targets": [{**student, "weight": round(weight, 6)}, {**service, "weight": round(1 - weight, 6)}]}
