"""The Gemini Batch API, behind ``GeminiProvider.run_batch``: half the price, answers within 24 hours.

The jobs go inline (``client.aio.batches.create(model=..., src=[InlinedRequest, ...])``, REST
``POST models/{model}:batchGenerateContent``), each question once, tagged ``metadata.key`` = its
journal key. The finished job (``GET batches/{id}``, state ``JOB_STATE_SUCCEEDED``) carries the
answers inline, matched back by that key, never by position. Requests beyond the API's inline size
limit go out as several batches.

Each batch's name is saved in the state file (see ``batch_common``) as soon as it is created, before
the first poll, so a run killed while waiting polls the same batches again instead of paying twice.
A batch that ends failed, cancelled or expired stops the run with one line once the others have
finished; the state then names only the batches that succeeded, so a rerun takes their answers
without paying again and submits the rest anew. An item the batch answered with an error (or not at
all) goes through the engine's normal path, as does one that fails its schema.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from .base import Backoff, Completion, FatalError, Job, ServiceError
from .batch_common import remember, resumed, retried
from .gemini_wire import completion_from, map_error

SUCCEEDED = ("JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED")
FAILED = ("JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED")


async def _call(backoff: Backoff, what: str, fn, *args, **kwargs):
    """One Batch API call, retried like a completion (RetryableError with backoff, up to max_retries)."""
    return await retried(backoff, lambda e: map_error(e, f"gemini batch {what}"), fn, *args, **kwargs)


def batch_parts(provider, jobs: list[Job]) -> list[list[tuple[str, object]]]:
    """The jobs' inline requests, one per distinct journal key, in parts of at most
    ``batch_inline_bytes`` each (a single larger request goes alone):
    ``[[(key, InlinedRequest), ...], ...]``."""
    parts, part, size, seen = [], [], 0, set()
    for job in jobs:
        if job.key in seen:
            continue
        seen.add(job.key)
        request = provider.batch_request(job)
        n = len(request.model_dump_json(exclude_none=True))
        if part and size + n > provider.batch_inline_bytes:
            parts.append(part)
            part, size = [], 0
        part.append((job.key, request))
        size += n
    return parts + ([part] if part else [])


def batch_answers(job, model: str) -> dict[str, Completion]:
    """Journal key -> Completion for each inline response of a finished job that holds an answer."""
    answers = {}
    for item in (job.dest.inlined_responses if job.dest else None) or []:
        key = (item.metadata or {}).get("key")
        if key is None or item.error is not None or item.response is None:
            continue  # left to the normal path
        try:
            answers[key] = completion_from(item.response, model, f"gemini batch {model}")
        except ServiceError:
            continue  # no candidates, blocked: asked again the normal way
    return answers


async def run_batch(provider, jobs: list[Job], *, state: Path | None, poll_s: float, backoff: Backoff
                    ) -> dict[str, Completion]:
    """Send ``jobs`` as batches (or wait for those ``state`` names); journal key -> Completion answered."""
    keys = sorted({job.key for job in jobs})
    # [{"name", "keys"}] a killed run paid for
    batches = list((resumed(state, keys) or {}).get("batches", []))
    covered = {k for b in batches for k in b["keys"]}
    for part in batch_parts(provider, [job for job in jobs if job.key not in covered]):
        created = await _call(backoff, "create", provider.aio.batches.create, model=provider.model,
                              src=[request for _, request in part], config={"display_name": "duo"})
        batches.append({"name": created.name, "keys": [key for key, _ in part]})
        remember(state, keys, batches=batches)  # before any wait: a rerun polls it instead of paying again
    answers, failed = await _wait(provider, batches, poll_s, backoff)
    if failed:
        ended = {b["name"] for b, _ in failed}
        remember(state, keys, batches=[b for b in batches if b["name"] not in ended])
        (b, how), more = failed[0], (f" (and {len(failed) - 1} more)" if len(failed) > 1 else "")
        raise FatalError(f"gemini batch {b['name']} ended {how}{more} "
                         f"with {len(b['keys'])} requests unanswered; "
                         "rerun to resubmit only those "
                         "(the journal and the finished batches' answers are kept)")
    return answers


async def _wait(provider, batches: list[dict], poll_s: float, backoff: Backoff) -> tuple[dict, list[tuple]]:
    """Poll every batch until it ends: (answers of those that
    succeeded, [(batch, final state)] of the others)."""
    answers, failed, pending = {}, [], list(batches)
    while pending:
        waiting = []
        for b in pending:
            job = await _call(backoff, "poll", provider.aio.batches.get, name=b["name"])
            state = getattr(job.state, "value", job.state)
            if state in SUCCEEDED:
                answers.update(batch_answers(job, provider.model))
            elif state in FAILED:
                failed.append((b, state))
            else:
                waiting.append(b)
        pending = waiting
        if pending:
            await asyncio.sleep(poll_s)
    return answers, failed
