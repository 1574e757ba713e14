"""The OpenAI Batch API, behind ``OpenAIProvider.run_batch``:
half the price, answers within the completion window.

All the jobs go into one JSONL file (``custom_id`` = the job's journal key, each question once),
uploaded with purpose ``batch``; the batch is polled until it ends and its output downloaded. The
engine validates and journals the answers; a job the batch did not answer, or answered with a reply
that fails its schema, goes through the engine's normal path (with re-asking). The batch id is kept
in the engine's state file (``<journal>.batch.json``) so a run killed while waiting polls the same
batch again instead of paying twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path

from .base import Backoff, Completion, Job
from .batch_common import remember, resumed, retried
from .openai_wire import completion_from, dump_request, map_error

DONE = ("completed", "failed", "expired", "cancelled")


async def _call(backoff: Backoff, what: str, fn, *args, **kwargs):
    """One Batch API call, retried like a completion (RetryableError with backoff, up to max_retries)."""
    import openai

    def mapped(e: Exception) -> Exception:
        return map_error(e, f"openai batch {what}") if isinstance(e, (openai.OpenAIError, ValueError)) else e

    return await retried(backoff, mapped, fn, *args, **kwargs)


def batch_input(provider, jobs: list[Job]) -> bytes:
    """The batch's JSONL input: one chat completion a distinct journal key."""
    lines, seen = [], set()
    for job in jobs:
        if job.key in seen:
            continue
        seen.add(job.key)
        body = dump_request(provider.model, job.request.messages, job.request.schema,
                            provider.sent_params(job.params), provider.structured_output)
        lines.append(json.dumps({"custom_id": job.key, "method": "POST", "url": "/v1/chat/completions",
                                 "body": body}))
    return ("\n".join(lines) + "\n").encode()


def batch_output(text: str) -> dict[str, Completion]:
    """custom_id -> Completion for each line of the output that answered with status 200."""
    answers: dict[str, Completion] = {}
    for line in text.splitlines():
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


async def run_batch(provider, jobs: list[Job], *, state: Path | None, poll_s: float, backoff: Backoff
                    ) -> dict[str, Completion]:
    """Send ``jobs`` as one batch (or wait for the one ``state`` names);
    journal key -> Completion answered."""
    client = provider.client
    keys = sorted({job.key for job in jobs})
    saved = resumed(state, keys)
    # resume waiting for the batch a killed run already paid for
    batch_id = saved.get("batch_id") if saved else None
    if batch_id is None:
        uploaded = await _call(backoff, "upload", client.files.create,
                               file=("duo-batch.jsonl", io.BytesIO(batch_input(provider, jobs))),
                               purpose="batch")
        batch = await _call(backoff, "create", client.batches.create, input_file_id=uploaded.id,
                            endpoint="/v1/chat/completions", completion_window="24h")
        batch_id = batch.id
        remember(state, keys, batch_id=batch_id)
    while True:
        batch = await _call(backoff, "poll", client.batches.retrieve, batch_id)
        if batch.status in DONE:
            break
        await asyncio.sleep(poll_s)
    if not batch.output_file_id:
        return {}
    content = await _call(backoff, "download", client.files.content, batch.output_file_id)
    return batch_output(content.text)
