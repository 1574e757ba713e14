"""OpenAI's stored chat completions as data rows (``data.source: openai:stored-completions``).

Completions created with ``store: true`` are listed through the official SDK,
``client.chat.completions.list(metadata=data.metadata)`` (every page), and each one's input turns come from
``client.chat.completions.messages.list(id)``; a row is the completion object with its ``messages``, the
stored-completion shape ``chat_logs`` reads (system prompts and earlier turns kept, the reply the target). The
client is the one the service's config names (``service.synthesize`` with provider openai: its ``base_url``
and key variable), else the SDK's defaults (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``).
"""

from __future__ import annotations

import hashlib
import json
import os

from ..errors import DuoError

SOURCE = "openai:stored-completions"


def _client(cfg):
    import openai

    svc = cfg.service.synthesize
    svc = svc if svc is not None and svc.provider == "openai" else None
    key_env = (svc.api_key_env if svc is not None else None) or "OPENAI_API_KEY"
    if not os.environ.get(key_env):
        raise DuoError(f"data.source {SOURCE}: listing stored completions needs an OpenAI key in {key_env}")
    return openai.OpenAI(api_key=os.environ[key_env], base_url=svc.base_url if svc is not None else None)


# the last listing, kept from ``fingerprint`` for the ``load_source`` right after it
_LISTED: dict[str, list[dict]] = {}


def stored_rows(cfg, *, again: bool = True) -> list[dict]:
    """Every stored completion matching ``data.metadata``, oldest first, each with its input ``messages``
    (``again=False``: the listing this process made last for the same filter, when there is one)."""
    import openai

    key = json.dumps([cfg.data.metadata, getattr(cfg.service.synthesize, "base_url", None)], sort_keys=True)
    if not again and key in _LISTED:
        return _LISTED.pop(key)

    metadata = {str(k): str(v) for k, v in (cfg.data.metadata or {}).items()}
    client = _client(cfg)
    rows = []
    try:
        for completion in client.chat.completions.list(metadata=metadata or openai.omit, order="asc"):
            row = completion.model_dump(mode="json", exclude_none=True)
            row["messages"] = [m.model_dump(mode="json", exclude_none=True)
                               for m in client.chat.completions.messages.list(completion.id, order="asc")]
            rows.append(row)
        _LISTED.clear()
        _LISTED[key] = rows
    except openai.APIError as exc:
        status = getattr(exc, "status_code", None)
        raise DuoError(f"data.source {SOURCE}: listing stored completions failed"
                       f"{f' ({status})' if status else ''}: {str(exc).splitlines()[0][:200]}") from None
    return rows


def rows_digest(rows: list[dict]) -> str:
    """sha256 of the listed rows: tells whether the stored completions changed since the split was made."""
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
