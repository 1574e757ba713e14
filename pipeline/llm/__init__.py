"""The service-LLM engine and its providers.

``Engine(service_cfg, journal=path).run(requests)`` asks a service LLM many things at once, within rate limits,
with retries, schema checks, a journal of answers and cost accounting. Providers are looked up by name
(``create_provider``) and imported only when used, so importing this package stays light.
"""

from __future__ import annotations

import importlib

from .base import Completion, FatalError, Provider, Request, RequestError, Result, RetryableError, ServiceError
from .engine import Engine

PROVIDERS = {
    "openai": "pipeline.llm.openai_provider:OpenAIProvider",
    "gemini": "pipeline.llm.gemini_provider:GeminiProvider",
}


def create_provider(cfg) -> Provider:
    """The provider named by ``cfg.provider``, built from the service config (reads the key from the env)."""
    if cfg.provider not in PROVIDERS:
        raise FatalError(f"service provider {cfg.provider!r} is not one of {sorted(PROVIDERS)}")
    module, cls = PROVIDERS[cfg.provider].split(":")
    return getattr(importlib.import_module(module), cls)(cfg)


__all__ = ["PROVIDERS", "Completion", "Engine", "FatalError", "Provider", "Request", "RequestError", "Result",
           "RetryableError", "ServiceError", "create_provider"]
