"""A durable, append-only JSONL journal of the service's answers and of every paid request:
a rerun never pays twice, and the journal is the spend ledger.

Three kinds of line:

- an answer:
  ``{"key", "request_key", "repeat", "text", "data", "usage", "finish_reason", "model", "t"}``,
  where ``key`` is ``journal_key(...)``, the sha256 of everything that decides the answer; a later
  run re-uses it.
- ``{"sent": id, "model", "input_tokens_max", "max_tokens", "at_most_usd", "t"}``, written before a
  request goes out: if its reply never arrives (the process was killed mid-flight) the ledger counts
  it as "unknown, at most".
- ``{"paid": id, "input_tokens", "output_tokens", "cost_usd", "t"}`` once the reply arrived
  (cost at the prices in force; 0 with ``"error"`` when the service answered with an HTTP error,
  which it does not bill). A timeout or a dropped connection after the send writes no ``paid``
  line: the request stays "unknown, at most" its ``sent`` line's ``at_most_usd``.

A line that does not parse, or whose ids or numbers cannot be real (``files.check_line``: cost
"abc", tokens "many", 1e308, NaN), is skipped with one warning naming the segment and the line.

The modules, lowest first:

- ``files``: reading a journal file, appending a line whole (a killed process loses none), fsync in groups.
- ``flush``: a segmented folder's :class:`Flusher`, copying new segments to the store while a
  stage runs (every ``journal.flush_s``, within the Hub's commits an hour), at exit and on
  SIGTERM/SIGINT (through ``pipeline.shutdown``'s stop hooks).
- ``answers``: :class:`Journal`, the answers by key, and ``keyed``, the one place a request's key is made.
- ``ledger``: the ``sent``/``paid`` lines written around every send, and ``read_ledger`` summing them.
- ``sync``: a stage's journal in the store (``open_journal``, ``store_ledger``) and the
  ``python -m pipeline.llm.journal.sync flush`` step of the composite actions. Not imported here: it
  needs the store and the config, which the engine does not.
"""

from __future__ import annotations

from .answers import Journal, journal_key, keyed
from .files import SEGMENT_GLOB, read_lines, sync_journals
from .ledger import Ledger, read_ledger, record_batch, recorded_send, unbilled

__all__ = ["SEGMENT_GLOB", "Journal", "Ledger", "journal_key", "keyed", "read_ledger", "read_lines",
           "record_batch", "recorded_send", "sync_journals", "unbilled"]
