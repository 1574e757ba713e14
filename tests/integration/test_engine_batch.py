"""The engine's Batch API path against the fake OpenAI files and batches endpoints."""

from __future__ import annotations

import json

import pytest

from pipeline.llm import Engine, Request
from pipeline.llm.journal import journal_key
from tests.fakes.openai_fixtures import service_cfg
from tests.fakes.openai_server import count_words

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def requests(n: int) -> list[Request]:
    return [Request(key=f"k{i}", messages=[{"role": "user", "content": f"question {i}"}], schema=SCHEMA)
            for i in range(n)]


def responder(body):
    text = body["messages"][0]["content"]
    if text == "question 3" and len(body["messages"]) == 1:
        return {"wrong": True}  # fails its schema in the batch; the normal path re-asks it
    return {"answer": text}


def test_batch_answers_validates_and_falls_back(fake_openai, tmp_path):
    fake_openai.set_responder(responder)
    cfg = service_cfg(rpm=None, price_input_per_1m=2.0, price_output_per_1m=8.0, schema_retries=1)
    engine = Engine(cfg, journal=tmp_path / "j.jsonl", batch=True, batch_poll_s=0.01, progress=False)
    results = engine.run(requests(10) + requests(1))
    assert [r.ok for r in results] == [True] * 11
    assert [r.data["answer"] for r in results] == [f"question {i}" for i in range(10)] + ["question 0"]
    assert results[10].cached and results[3].attempts == 2
    paths = [e["path"] for e in fake_openai.log]
    assert paths.count("/v1/files") == 1 and paths.count("/v1/batches") == 1
    sync = [e for e in fake_openai.log if e["path"] == "/v1/chat/completions"]
    assert len(sync) == 1 and sync[0]["body"]["messages"][0]["content"] == "question 3"
    upload = fake_openai.files["file-000001"]["data"].decode().splitlines()
    assert len(upload) == 10 and json.loads(upload[0])["body"]["response_format"]["type"] == "json_schema"
    # cost: batch answers at half price, the one synchronous re-ask at full price
    rep = fake_openai.reported
    assert engine.usage["requests"] == rep["requests"] == 11
    assert engine.usage["input_tokens"] == rep["prompt_tokens"]
    sync_in = sum(count_words(m["content"]) for m in sync[0]["body"]["messages"])
    sync_out = count_words('{"answer": "question 3"}')
    batch_cost = ((rep["prompt_tokens"] - sync_in) * 2.0 + (rep["completion_tokens"] - sync_out) * 8.0) / 2e6
    assert engine.usage["cost_usd"] == pytest.approx(batch_cost + (sync_in * 2.0 + sync_out * 8.0) / 1e6)
    assert not (tmp_path / "j.jsonl.batch.json").exists()
    # everything is journaled: a rerun sends nothing
    fake_openai.reset()
    again = Engine(cfg, journal=tmp_path / "j.jsonl", batch=True, progress=False).run(requests(10))
    assert all(r.cached for r in again) and fake_openai.log == []


def test_a_killed_run_polls_the_batch_it_already_created(fake_openai, tmp_path):
    fake_openai.set_responder(lambda body: {"answer": body["messages"][0]["content"]})  # echo: shows whose answer
    journal = tmp_path / "j.jsonl"
    cfg = service_cfg(rpm=None)
    # the state a run killed while waiting leaves behind: a batch created, its id next to the journal
    first = Engine(cfg, journal=journal, batch=True, batch_poll_s=0.01, progress=False)
    key_of = {r.key: journal_key("openai", cfg.model, {}, r.messages, r.schema, 0) for r in requests(4)}
    keys = sorted(key_of.values())
    lines = "\n".join(json.dumps({"custom_id": key_of[r.key], "method": "POST", "url": "/v1/chat/completions",
                                  "body": {"model": cfg.model, "messages": r.messages}})
                      for r in reversed(requests(4)))  # output order must not matter, only custom_id
    fake_openai.files["file-x"] = {"data": lines.encode(), "filename": "in.jsonl", "purpose": "batch",
                                   "created_at": 0}
    fake_openai.batches["batch-x"] = {"id": "batch-x", "object": "batch", "endpoint": "/v1/chat/completions",
                                      "errors": None, "input_file_id": "file-x", "completion_window": "24h",
                                      "status": "validating", "output_file_id": None, "error_file_id": None,
                                      "created_at": 0, "request_counts": {"total": 0, "completed": 0, "failed": 0}}
    (tmp_path / "j.jsonl.batch.json").write_text(json.dumps({"batch_id": "batch-x", "keys": keys}))
    results = first.run(requests(4))
    assert [(r.key, r.ok, r.data) for r in results] == [(f"k{i}", True, {"answer": f"question {i}"}) for i in range(4)]
    paths = [e["path"] for e in fake_openai.log]
    assert "/v1/files" not in paths and "/v1/batches" not in paths and "/v1/batches/batch-x" in paths
    assert "/v1/chat/completions" not in paths  # every answer came from the batch, none was asked again


def test_a_batch_that_answers_everything_leaves_nothing_to_ask(fake_openai):
    results = Engine(service_cfg(rpm=None), batch=True, batch_poll_s=0.01, progress=False).run(requests(3))
    assert [r.data for r in results] == [{"answer": "example text"}] * 3
    assert not [e for e in fake_openai.log if e["path"] == "/v1/chat/completions"]
