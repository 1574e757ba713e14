"""The LiteLLM proxy's config for a canary of the student against the service (``litellm --config``).

One model name (``rollout.model_name``) with three deployments chosen by weight (LiteLLM's
``simple-shuffle`` reads ``litellm_params.weight``): the student (``w``), the service with its answers
mirrored to the student (``(1 - w) x shadow``, LiteLLM's ``silent_model``), and the service without
the mirror (``(1 - w) x (1 - shadow)``). Two more model names that clients never ask for: ``<name>-service``
(the service alone, the fallback of ``<name>`` on any error, or a student slower than ``timeout_s``)
and ``<name>-shadow`` (the student alone, the silent model). Each deployment carries
``model_info.duo_deployment`` (student | service), which the capture hook writes on each line.
"""

from __future__ import annotations

from ..config import Config
from ..errors import DuoError

MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
HOOK_MODULE = "duo_capture"  # the hook file beside the config: duo_capture.py (and duo_capture.json)


def names(cfg: Config) -> dict[str, str]:
    """The model names of the config: the one clients ask for, its fallback and its silent model."""
    name = cfg.rollout.model_name or cfg.task.name
    return {"model": name, "fallback": f"{name}-service", "shadow": f"{name}-shadow"}


def deployment_ids(cfg: Config) -> dict[str, str]:
    """``model_info.id`` of each deployment (LiteLLM's retry breadcrumbs name the deployment by it)."""
    name = names(cfg)["model"]
    return {"student": f"{name}-student", "service_mirrored": f"{name}-service-mirrored",
            "service": f"{name}-service-direct", "fallback": f"{name}-service-fallback",
            "shadow": f"{name}-student-shadow"}


def student_model(cfg: Config) -> str:
    return cfg.rollout.student.model or cfg.task.name


def service_params(cfg: Config) -> dict:
    """``litellm_params`` of the service (``service.synthesize``: OpenAI, Gemini, or an
    OpenAI-compatible server at base_url); the key is read from its environment variable."""
    svc = cfg.service.synthesize
    if svc is None:
        raise DuoError("rollout: service.synthesize is not configured; expected the service LLM "
                       "the student is canaried against")
    params = {"model": f"{svc.provider}/{svc.model}", "api_key": f"os.environ/{svc.api_key_env}"}
    if svc.base_url:
        params["api_base"] = svc.base_url
    if svc.timeout_s:
        params["timeout"] = svc.timeout_s
    return params


def student_params(cfg: Config) -> dict:
    st = cfg.rollout.student
    key = f"os.environ/{st.api_key_env}" if st.api_key_env else "none"
    return {"model": f"openai/{student_model(cfg)}", "api_base": st.base_url, "api_key": key,
            "timeout": cfg.rollout.timeout_s, "stream_timeout": cfg.rollout.timeout_s}


def proxy_config(cfg: Config, weight: float) -> dict:
    """The proxy's config as a dict (written as YAML), for student weight ``weight`` in [0, 1]."""
    n, ro = names(cfg), cfg.rollout
    svc = cfg.service.synthesize
    service, student = service_params(cfg), student_params(cfg)
    service_info = {"duo_deployment": "service", "duo_model": svc.model if svc else None}
    student_info = {"duo_deployment": "student", "duo_model": student_model(cfg)}
    rest = 1.0 - weight
    ids = deployment_ids(cfg)
    served = [(student, student_info, weight, None, ids["student"]),
              (service, service_info, rest * ro.shadow, n["shadow"], ids["service_mirrored"]),
              (service, service_info, rest * (1.0 - ro.shadow), None, ids["service"])]
    models = []
    for params, info, share, silent, uid in served:
        if share <= 0:
            continue
        lp = {**params, "weight": round(share, 6)}
        if silent:
            lp["silent_model"] = silent
        models.append({"model_name": n["model"], "litellm_params": lp, "model_info": {**info, "id": uid}})
    models.append({"model_name": n["fallback"], "litellm_params": dict(service),
                   "model_info": {**service_info, "id": ids["fallback"]}})
    models.append({"model_name": n["shadow"], "litellm_params": dict(student),
                   "model_info": {**student_info, "id": ids["shadow"]}})
    return {
        "model_list": models,
        "router_settings": {
            "routing_strategy": "simple-shuffle",
            "num_retries": 0,  # a failed student goes straight to the fallback, not to another draw
            "fallbacks": [{n["model"]: [n["fallback"]]}],
            "timeout": max(ro.timeout_s, service.get("timeout") or 0),
        },
        "litellm_settings": {"callbacks": [f"{HOOK_MODULE}.handler"], "drop_params": True,
                             "telemetry": False},
        # the proxy refuses to start without a master key; clients send it as their API key
        "general_settings": {"master_key": f"os.environ/{MASTER_KEY_ENV}"},
    }


def hook_settings(cfg: Config, traffic: str) -> dict:
    """``duo_capture.json``: what the hook needs (it imports nothing of duo)."""
    ids = deployment_ids(cfg)
    return {"traffic": traffic, "gateway": "litellm", **{f"{k}_group": v for k, v in names(cfg).items()},
            "student_ids": [ids["student"], ids["shadow"]]}
