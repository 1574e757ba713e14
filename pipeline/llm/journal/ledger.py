"""The spend ledger: a ``sent`` line before every paid request and a ``paid`` line once its
reply arrived, written around each send; summed back from journal files by ``read_ledger``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ...shutdown import Stopped, handed_on, in_flight, stopping
from ..base import FatalError, ServiceError
from ..usage import worst_case_tokens
from .answers import Journal
from .files import NEW_SEGMENT, read_lines


@dataclass
class Ledger:
    """Spend read from journal files: replies that arrived (``cost_usd``), and requests sent
    whose reply never did (``pending``, costing ``unknown_at_most_usd`` at worst)."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    pending: int = 0
    unknown_at_most_usd: float = 0.0
    answers: int = 0
    skipped_lines: int = 0  # malformed lines left out (a skipped paid line leaves its send pending)
    sent: dict = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 8),
            "pending": self.pending,
            "unknown_at_most_usd": round(self.unknown_at_most_usd, 8),
            "answers": self.answers,
            "skipped_lines": self.skipped_lines,
        }


def read_ledger(files: Iterable[Path]) -> Ledger:
    """Sum the spend recorded in ``files``. A file with no ``sent``/``paid`` lines
    (written before the journal kept them) counts its answers' own usage instead."""
    ledger, settled = Ledger(), set()
    for path in files:
        entries, skipped = read_lines(Path(path))
        ledger.skipped_lines += skipped
        # a segment of a ledger-keeping journal (not one adopted from the single-file layout:
        # part-0-0-*) has its cost in sent/paid lines, even one that holds only answers (it was
        # started after a flush)
        keeps_sends = (bool(NEW_SEGMENT.match(Path(path).name))
                       or any("sent" in e or "paid" in e for e in entries))
        for e in entries:
            if "paid" in e:
                settled.add(e["paid"])
                ledger.requests += 0 if e.get("error") else 1
                ledger.input_tokens += int(e.get("input_tokens") or 0)
                ledger.output_tokens += int(e.get("output_tokens") or 0)
                ledger.cost_usd += float(e.get("cost_usd") or 0.0)
            elif "sent" in e:
                ledger.sent[e["sent"]] = float(e.get("at_most_usd") or 0.0)
            elif "key" in e:
                ledger.answers += 1
                if not keeps_sends:
                    usage = e.get("usage") or {}
                    ledger.requests += int(usage.get("requests") or 0)
                    ledger.input_tokens += int(usage.get("input_tokens") or 0)
                    ledger.output_tokens += int(usage.get("output_tokens") or 0)
                    ledger.cost_usd += float(usage.get("cost_usd") or 0.0)
    unsettled = [v for k, v in ledger.sent.items() if k not in settled]
    ledger.pending, ledger.unknown_at_most_usd = len(unsettled), sum(unsettled)
    return ledger


class Send:
    """One request on its way, recorded in a ledger journal: ``answered(completion)`` writes what it cost."""

    def __init__(self, journal: Journal, sid: str, meter):
        self.journal, self.sid, self.meter = journal, sid, meter

    def answered(self, completion) -> None:
        m = self.meter
        self.journal.paid(self.sid, completion.input_tokens, completion.output_tokens,
                          (completion.input_tokens * m.price_input_per_1m
                           + completion.output_tokens * m.price_output_per_1m) / 1e6)


def unbilled(err: BaseException) -> bool:
    """Whether a send that failed with ``err`` surely cost nothing: the service answered with an
    HTTP error status, or the request was refused before it left (a FatalError without a status:
    no key, an unknown parameter). Anything else after the send (a timeout, a dropped connection,
    a reply that does not parse or carries no content) may have been charged: unknown, at most
    the reservation."""
    if isinstance(err, ServiceError):
        return err.status is not None or isinstance(err, FatalError)
    return False


async def _until_free() -> None:
    """Wait while a signal is handled (the replies in flight land);
    raise Stopped once it ends the run."""
    while stopping():
        if handed_on():
            raise Stopped("not sent: the run is stopping on a signal")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def recorded_send(journal: Journal | None, model: str | None, messages: list, schema: dict | None,
                        params: dict, meter):
    """Around one send to the service: a ``sent`` line (with its worst-case cost) first, the
    ``paid`` line through the yielded :class:`Send` when the reply arrives, a ``paid`` line of 0
    with the error when the service surely charged nothing (``unbilled``); any other failure (a
    timeout, a dropped connection, a cancel) stays unknown, at most the worst case. Yields None for
    a journal that keeps answers only (a single file: no ledger); nothing new goes out while a
    signal is handled."""
    if journal is None or journal.flusher is None:
        yield None
        return
    tokens_in, limit = worst_case_tokens(messages, schema, params)
    await _until_free()
    at_most = (tokens_in * meter.price_input_per_1m + limit * meter.price_output_per_1m) / 1e6
    sid = journal.sent(model, tokens_in, limit, at_most)
    with in_flight():
        try:
            yield Send(journal, sid, meter)
        except Exception as err:
            if unbilled(err):
                journal.paid(sid, 0, 0, 0.0, error=f"{type(err).__name__}: {err}")
            raise


def record_batch(journal: Journal | None, answers: dict, discount: float, meter) -> None:
    """A batch's answers as paid in a ledger journal (at the batch discount)."""
    if journal is None or journal.flusher is None:
        return
    for c in answers.values():
        journal.paid(None, c.input_tokens, c.output_tokens, discount * (
            c.input_tokens * meter.price_input_per_1m + c.output_tokens * meter.price_output_per_1m) / 1e6)
