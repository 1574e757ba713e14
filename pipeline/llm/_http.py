"""Helpers the providers share: the key and base URL from the config and environment,
and Retry-After parsing."""

from __future__ import annotations

import email.utils
import os
import time

from .base import FatalError


def connection(cfg, provider: str, base_url_env: str) -> tuple[str, str | None]:
    """(API key, base URL): the key from the variable ``cfg.api_key_env`` names, the URL from
    ``cfg.base_url``, else the variable ``base_url_env``, else None (the SDK's default)."""
    key = os.environ.get(cfg.api_key_env)
    if not key:
        raise FatalError(f"{provider}: no API key; set the environment variable {cfg.api_key_env}")
    return key, cfg.base_url or os.environ.get(base_url_env) or None


def retry_after(headers) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), else None."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None
