"""The OpenAI Batch API path of the engine: half the price, answers within the completion window.

All uncached items go into one JSONL file (``custom_id`` = the item's journal key), uploaded with purpose
``batch``; the batch is polled until it ends, its output downloaded and each answer validated and journaled. An
item the batch did not answer, or answered with a reply that fails its schema, goes through the engine's normal
path (with re-asking). The batch id is kept next to the journal (``<journal>.batch.json``) so a run killed while
waiting polls the same batch again instead of paying twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path

from .base import Completion, RetryableError
from .openai_provider import completion_from, dump_request, map_error

BATCH_DISCOUNT = 0.5  # the Batch API costs half of the synchronous price
DONE = ("completed", "failed", "expired", "cancelled")


async def _call(engine, what: str, fn, *args, **kwargs):
    """One Batch API call, retried like a completion (RetryableError with backoff, up to max_retries)."""
    import openai

    for attempt in range(engine.cfg.max_retries + 1):
        try:
            return await fn(*args, **kwargs)
        except (openai.OpenAIError, ValueError) as e:
            err = map_error(e, f"openai batch {what}")
            if not isinstance(err, RetryableError) or attempt == engine.cfg.max_retries:
                raise err from None
            await asyncio.sleep(err.retry_after or min(engine.backoff_cap, engine.backoff_base * 2**attempt))
    raise AssertionError("unreachable")


def state_path(engine) -> Path | None:
    """Where the id of the batch in flight is kept (removed by the engine once its answers are journaled)."""
    return Path(str(engine.journal.path) + ".batch.json") if engine.journal is not None else None


async def run_batch(engine, provider, todo: list[tuple]) -> dict[str, Completion]:
    """Send ``todo`` ([(index, Request, params, journal key)]) as one batch; journal key -> Completion answered."""
    client = provider.client
    side = state_path(engine)
    keys = sorted({key for _, _, _, key in todo})
    batch_id = None
    if side is not None and side.exists():
        state = json.loads(side.read_text())
        if state.get("keys") == keys:
            batch_id = state["batch_id"]  # resume waiting for the batch a killed run already paid for
    if batch_id is None:
        lines, seen = [], set()
        for _, req, params, key in todo:
            if key in seen:
                continue
            seen.add(key)
            body = dump_request(engine.cfg.model, req.messages, req.schema, params, engine.cfg.structured_output)
            lines.append(json.dumps({"custom_id": key, "method": "POST", "url": "/v1/chat/completions",
                                     "body": body}))
        data = ("\n".join(lines) + "\n").encode()
        uploaded = await _call(engine, "upload", client.files.create, file=("duo-batch.jsonl", io.BytesIO(data)),
                               purpose="batch")
        batch = await _call(engine, "create", client.batches.create, input_file_id=uploaded.id,
                            endpoint="/v1/chat/completions", completion_window="24h")
        batch_id = batch.id
        if side is not None:
            side.write_text(json.dumps({"batch_id": batch_id, "keys": keys}))
    while True:
        batch = await _call(engine, "poll", client.batches.retrieve, batch_id)
        if batch.status in DONE:
            break
        await asyncio.sleep(engine.batch_poll_s)
    answers: dict[str, Completion] = {}
    if batch.output_file_id:
        content = await _call(engine, "download", client.files.content, batch.output_file_id)
        for line in content.text.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            response = item.get("response") or {}
            if response.get("status_code") != 200:
                continue  # left to the normal path
            # a line that does not parse is one unanswered item, asked again the normal way
            with contextlib.suppress(Exception):
                answers[item["custom_id"]] = completion_from(response["body"], "openai batch")
    return answers
