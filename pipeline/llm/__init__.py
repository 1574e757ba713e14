"""The service-LLM engine and its providers.

``Engine(service_cfg, journal=path).run(requests)`` asks a service LLM many things at once, within
rate limits, with retries, schema checks, a journal of answers and cost accounting. Providers are
looked up by name (``create_provider``; add one with ``register_provider``) and imported only when
used, so importing this package stays light.
"""

from __future__ import annotations

from .base import (
    BatchProvider,
    Completion,
    FatalError,
    Provider,
    Request,
    RequestError,
    Result,
    RetryableError,
    ServiceError,
)
from .engine import Engine
from .providers import PROVIDERS, create_provider, register_provider

__all__ = ["PROVIDERS", "BatchProvider", "Completion", "Engine", "FatalError", "Provider",
           "Request", "RequestError", "Result", "RetryableError", "ServiceError",
           "create_provider", "register_provider"]
