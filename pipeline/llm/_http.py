"""Helpers the providers share: the key from the environment and Retry-After parsing."""

from __future__ import annotations

import email.utils
import os
import time

from .base import FatalError


def api_key(env_var: str, provider: str) -> str:
    key = os.environ.get(env_var)
    if not key:
        raise FatalError(f"{provider}: no API key; set the environment variable {env_var}")
    return key


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
