"""The provider registry: a service config's ``provider`` name -> what builds that provider from the config.

Built-in providers are named by ``"module:Class"`` and imported only when used, so importing the
package stays light. ``register_provider`` adds another (a local backend, a test's fake) or replaces
one for a while::

    previous = register_provider("openai", lambda cfg: FakeLLM())
    ...                                     # every Engine built from a config with provider openai uses it
    register_provider("openai", previous)   # put back what was there
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from .base import FatalError, Provider

Factory = str | Callable[..., Provider]  # "module:Class", or a callable taking the service config

PROVIDERS: dict[str, Factory] = {
    "openai": "pipeline.llm.openai_provider:OpenAIProvider",
    "gemini": "pipeline.llm.gemini_provider:GeminiProvider",
}


def register_provider(name: str, factory: Factory | None) -> Factory | None:
    """Make ``name`` build its provider with ``factory(service_cfg)`` (None: forget ``name``).

    Returns:
        What ``name`` was registered as before (None if nothing),
            to hand back to ``register_provider`` later.
    """
    previous = PROVIDERS.get(name)
    if factory is None:
        PROVIDERS.pop(name, None)
    else:
        PROVIDERS[name] = factory
    return previous


def create_provider(cfg) -> Provider:
    """The provider named by ``cfg.provider``, built from the service config (reads the key from the env)."""
    factory = PROVIDERS.get(cfg.provider)
    if factory is None:
        raise FatalError(f"service provider {cfg.provider!r} is not one of {sorted(PROVIDERS)}")
    if isinstance(factory, str):
        module, cls = factory.split(":")
        factory = getattr(importlib.import_module(module), cls)
    return factory(cfg)
