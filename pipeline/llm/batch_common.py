"""What the batch API paths (``openai_batch.py``, ``gemini_batch.py``) share: calls retried like
completions, and the state file that names the batches a run created, so that a run killed while
waiting polls them again instead of paying twice.

The state file sits beside the journal (``<journal>.batch.json``):
``{"keys": [journal keys asked], ...}`` plus what the provider needs to find its batches again. It
is written (atomically) right after a batch is created, before the first poll; the engine removes it
once every answer is journaled. A rerun asking a different set of keys ignores it.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path

from .base import Backoff, RetryableError


async def retried(backoff: Backoff, map_error: Callable[[Exception], Exception], fn, *args, **kwargs):
    """``await fn(*args, **kwargs)``, retried on a RetryableError (backoff, up to ``max_retries``);
    ``map_error`` turns an SDK exception into a duo error (an exception it returns unchanged is
    raised as it is)."""
    for attempt in range(backoff.max_retries + 1):
        try:
            return await fn(*args, **kwargs)
        except Exception as e:
            err = map_error(e)
            if err is e:
                raise
            if not isinstance(err, RetryableError) or attempt == backoff.max_retries:
                raise err from None
            await asyncio.sleep(backoff.delay(attempt, err.retry_after))
    raise AssertionError("unreachable")


def resumed(state: Path | None, keys: list[str]) -> dict | None:
    """What a killed run saved about its batches for exactly these ``keys``, else None."""
    if state is None or not state.exists():
        return None
    try:
        saved = json.loads(state.read_text())
    except ValueError:
        return None  # torn by a kill mid-write (cannot happen with ``remember``, but a hand-edited file may)
    return saved if isinstance(saved, dict) and saved.get("keys") == keys else None


def remember(state: Path | None, keys: list[str], **fields) -> None:
    """Save ``{"keys": keys, **fields}`` to ``state`` atomically
    (a kill leaves the old file or the new one)."""
    if state is None:
        return
    tmp = state.with_name(state.name + ".tmp")
    tmp.write_text(json.dumps({"keys": keys, **fields}))
    os.replace(tmp, state)
