"""Issue 19, items 4 and 6 (journal part): bad journal lines are skipped with one warning naming the
segment and the line, never a traceback; which failures the ledger books as $0; the Hub's commit
budget of the flusher."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from pipeline.llm.base import FatalError, RequestError, RetryableError
from pipeline.llm.journal import Journal, read_ledger, read_lines, unbilled
from pipeline.llm.journal.flush import CommitBudget, Flusher, release, segmented

SID = "a1b2c3d4e5f60718"


def segment(tmp_path, *lines: str):
    path = tmp_path / "part-1700000000000000000-1-synthesize.jsonl"
    sent = {"sent": SID, "model": "m", "input_tokens_max": 10, "max_tokens": 100, "at_most_usd": 0.5,
            "t": 1}
    path.write_text("\n".join([json.dumps(sent), *lines]) + "\n")
    return path


@pytest.mark.parametrize("paid", [
    '{"paid": "%s", "input_tokens": 8, "output_tokens": 20, "cost_usd": "abc", "t": 2}',
    '{"paid": "%s", "input_tokens": "many", "output_tokens": 20, "cost_usd": 0.25, "t": 2}',
    '{"paid": "%s", "input_tokens": 8, "output_tokens": 20, "cost_usd": 1e308, "t": 2}',
    '{"paid": "%s", "input_tokens": 1e308, "output_tokens": 20, "cost_usd": 0.25, "t": 2}',
    '{"paid": "%s", "input_tokens": 8, "output_tokens": 20, "cost_usd": Infinity, "t": 2}',
    '{"paid": "%s", "input_tokens": 8, "output_tokens": 20, "cost_usd": NaN, "t": 2}',
    '{"paid": "%s", "input_tokens": 8, "output_tokens": 20, "cost_usd": 1e999, "t": 2}',
    '{"paid": "%s", "input_tokens": 8, "output_tokens": -20, "cost_usd": 0.25, "t": 2}',
    '{"paid": "%s", "input_tokens": 8, "output_tokens": 20, "cost_usd": 0.25, "t": 2',
    '{"paid": ["%s"], "input_tokens": 8, "output_tokens": 20, "cost_usd": 0.25, "t": 2}',
], ids=["cost-abc", "tokens-many", "cost-1e308", "tokens-1e308", "cost-inf", "cost-nan",
        "cost-1e999", "negative", "torn", "id-not-a-string"])
def test_a_bad_paid_line_is_skipped_with_one_warning_and_its_request_stays_unknown(tmp_path, caplog,
                                                                                   paid):
    path = segment(tmp_path, paid % SID)
    with caplog.at_level(logging.WARNING):
        ledger = read_ledger([path])
        again = read_ledger([path])  # read again (every stage reads the ledger): no second warning
    assert ledger.skipped_lines == 1 and again.skipped_lines == 1
    assert ledger.cost_usd == 0 and ledger.requests == 0
    assert ledger.pending == 1 and ledger.unknown_at_most_usd == 0.5  # its send: unknown, at most
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and "line 2" in warnings[0]
    assert "\n" not in warnings[0]


def test_a_bad_answer_line_is_skipped_and_the_good_ones_kept(tmp_path, caplog):
    path = tmp_path / "answers.jsonl"
    path.write_text("\n".join([
        json.dumps({"key": "k1", "text": "one", "usage": {"requests": 1, "cost_usd": 0.1}}),
        json.dumps({"key": ["not", "a", "key"], "text": "two"}),
        json.dumps({"key": "k3", "text": "three", "usage": {"requests": "many"}}),
        json.dumps({"key": "k4", "text": "four", "usage": "free"}),
        json.dumps({"key": "k5", "text": "five"}),
    ]) + "\n")
    with caplog.at_level(logging.WARNING):
        journal = Journal(path)
    assert set(journal._entries) == {"k1", "k5"} and journal.skipped_lines == 3
    (message,) = [r.getMessage() for r in caplog.records]
    assert all(f"line {n}" in message for n in (2, 3, 4)) and str(path) in message


def test_a_segment_that_is_a_folder_gets_one_line_naming_it(tmp_path, caplog):
    folder = tmp_path / "journal" / "synthesize" / "round-1"
    folder.mkdir(parents=True)
    paid = {"paid": SID, "input_tokens": 8, "output_tokens": 20, "cost_usd": 0.25, "t": 2}
    segment(folder, json.dumps(paid))
    (folder / "part-1700000000000000001-1-synthesize.jsonl").mkdir()
    pushed = []
    segmented(folder, Flusher(folder, lambda files: pushed.append(sorted(p.name for p in files))))
    try:
        with caplog.at_level(logging.WARNING):
            journal = Journal(folder / "synthesize.jsonl")
            ledger = read_ledger(sorted(folder.glob("part-*.jsonl")))
            journal.put("k1", text="one")
            assert journal.flusher.flush() == 2  # the folder is not pushed
    finally:
        release(folder)
    assert ledger.cost_usd == 0.25 and ledger.pending == 0
    assert all("part-1700000000000000001" not in name for names in pushed for name in names)
    (message,) = {r.getMessage() for r in caplog.records}
    assert message.endswith("is a folder, not a file: skipped")
    assert "part-1700000000000000001" in message


def test_read_lines_of_a_missing_file_is_empty():
    from pathlib import Path

    assert read_lines(Path("/nonexistent/part-1-1-x.jsonl")) == ([], 0)


@pytest.mark.parametrize("err, zero", [
    (RetryableError("openai gpt-4o: APITimeoutError: Request timed out."), False),
    (RetryableError("gemini: RemoteProtocolError: Server disconnected"), False),
    (RetryableError("openai gpt-4o: malformed reply: ..."), False),
    (asyncio.TimeoutError(), False),
    (RequestError("openai gpt-4o: no content (finish_reason content_filter)"), False),
    (RetryableError("HTTP 429", retry_after=1.0, status=429), True),
    (RetryableError("HTTP 500", status=500), True),
    (RequestError("HTTP 400", status=400), True),
    (FatalError("gemini: unknown generation parameter(s)"), True),
    (FatalError("HTTP 401", status=401), True),
], ids=["timeout", "dropped", "malformed", "asyncio-timeout", "no-content", "429", "500", "400",
        "local-fatal", "401"])
def test_only_a_refusal_is_booked_zero(err, zero):
    assert unbilled(err) is zero


def test_the_commit_budget_lets_half_come_at_once_then_spreads_the_rest():
    budget = CommitBudget(per_hour=60)
    assert budget.size == 30 and budget.refill_s == 120
    for _ in range(30):
        assert budget.wait_s() == 0
        budget.spend()
    assert 119 < budget.wait_s() <= 120
    budget.spend()  # a push that must go (the stage's end, a signal) still counts
    assert 239 < budget.wait_s() <= 240
