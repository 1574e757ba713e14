"""The engine's Gemini Batch API path (issue 11, item 3) against the fake Gemini server, through google-genai."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.llm import Engine, FatalError, Request
from pipeline.llm.gemini_provider import GeminiProvider
from pipeline.stages import prepare, synthesize
from pipeline.store import open_store
from tests.fakes.http_base import error_reply
from tests.fakes.openai_fixtures import service_cfg
from tests.fakes.openai_server import count_words
from tests.integration.test_synthesize import fresh, make_config

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
CREATE = ":batchGenerateContent"
ROOT = Path(__file__).resolve().parents[2]


def cfg(**kw):
    return service_cfg("gemini", **{"rpm": None, "max_retries": 4, "schema_retries": 1, "timeout_s": 10, **kw})


def requests(n: int, start: int = 0) -> list[Request]:
    return [Request(key=f"k{i}", messages=[{"role": "system", "content": "be brief"},
                                           {"role": "user", "content": f"question {i}"}], schema=SCHEMA)
            for i in range(start, start + n)]


def user_text(body: dict) -> str:
    return body["contents"][0]["parts"][0]["text"]


def echo(body: dict):
    return {"answer": user_text(body)}


def paths(fake, method: str | None = None) -> list[str]:
    return [e["path"] for e in fake.log if method is None or e["method"] == method]


def creates(fake) -> int:
    return sum(p.endswith(CREATE) for p in paths(fake, "POST"))


def test_batch_answers_by_key_at_half_price_and_falls_back(fake_gemini, tmp_path):
    seen = []

    def respond(body):
        text = user_text(body)
        seen.append(text)
        if text == "question 3" and len(body["contents"]) == 1:
            return {"wrong": True}  # fails its schema in the batch: the normal path re-asks it
        if text == "question 5" and seen.count(text) == 1:
            return error_reply(500, "internal (fake)")  # answered with an error inside the batch, not after
        return {"answer": text}

    fake_gemini.set_responder(respond)
    fake_gemini.batch_polls, fake_gemini.batch_reverse = 2, True  # answers listed backwards: matched by key
    hits = []

    def first_create_and_poll_fail(req):
        kind = "create" if req.path.endswith(CREATE) else "poll"
        hits.append(kind)
        if hits.count(kind) == 1:
            return error_reply(429, "slow down (fake)", headers={"Retry-After": "0.01"}) if kind == "create" else (
                error_reply(503, "unavailable (fake)"))
        return None

    fake_gemini.add_hook(first_create_and_poll_fail)
    engine = Engine(cfg(price_input_per_1m=2.0, price_output_per_1m=8.0), journal=tmp_path / "j.jsonl", batch=True,
                    batch_poll_s=0.01, backoff_base=0.01, progress=False)
    results = engine.run(requests(8) + requests(1))
    assert [(r.key, r.ok, r.data) for r in results] == (
        [(f"k{i}", True, {"answer": f"question {i}"}) for i in range(8)] + [("k0", True, {"answer": "question 0"})])
    assert results[8].cached and results[3].attempts == 2 and results[5].attempts == 1
    assert creates(fake_gemini) == 2  # the 429 on create is retried; only the accepted create makes a batch
    (batch,) = fake_gemini.batches.values()
    assert len(batch["requests"]) == 8 and batch["polls"] == 3  # the 503 on a poll is retried too
    assert {r["metadata"]["key"] for r in batch["requests"]} == {
        json.loads(line)["key"] for line in (tmp_path / "j.jsonl").read_text().splitlines()}
    sync = [e for e in fake_gemini.log if e["path"].endswith(":generateContent")]
    assert sorted(user_text(e["body"]) for e in sync) == ["question 3", "question 5"]
    # cost: the batch's answers at half price, the two synchronous asks at full price
    sync_in = sum(sum(count_words(c["parts"][0]["text"]) for c in e["body"]["contents"]) + 2 for e in sync)
    sync_out = sum(count_words(json.dumps({"answer": user_text(e["body"])})) for e in sync)
    rep = fake_gemini.reported
    batch_cost = ((rep["prompt_tokens"] - sync_in) * 2.0 + (rep["completion_tokens"] - sync_out) * 8.0) / 2e6
    assert engine.usage["cost_usd"] == pytest.approx(batch_cost + (sync_in * 2.0 + sync_out * 8.0) / 1e6)
    assert not (tmp_path / "j.jsonl.batch.json").exists()
    fake_gemini.reset()
    again = Engine(cfg(), journal=tmp_path / "j.jsonl", batch=True, progress=False).run(requests(8))
    assert all(r.cached for r in again) and fake_gemini.log == []


def test_a_run_killed_while_polling_resumes_without_resubmitting(fake_gemini, tmp_path):
    """The batch is recorded before the first poll: a rerun after a kill polls it and creates nothing."""
    fake_gemini.set_responder(echo)
    fake_gemini.batch_polls = 10**6  # the batch stays running while the first run polls it
    journal = tmp_path / "j.jsonl"
    script = ("import sys; from pipeline.llm import Engine; from tests.integration.test_engine_gemini_batch import "
              "cfg, requests; Engine(cfg(), journal=sys.argv[1], batch=True, batch_poll_s=0.02, progress=False)"
              ".run(requests(6))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(journal)], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 120
        while sum("/batches/" in p for p in paths(fake_gemini, "GET")) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "the first run never polled"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert creates(fake_gemini) == 1 and (tmp_path / "j.jsonl.batch.json").exists()
    fake_gemini.batch_polls = 0  # the batch ends at the next poll
    results = Engine(cfg(), journal=journal, batch=True, batch_poll_s=0.01, progress=False).run(requests(6))
    assert [(r.key, r.data) for r in results] == [(f"k{i}", {"answer": f"question {i}"}) for i in range(6)]
    assert creates(fake_gemini) == 1  # the second run created no batch of its own
    assert not [p for p in paths(fake_gemini) if p.endswith(":generateContent")]
    assert not (tmp_path / "j.jsonl.batch.json").exists()


def test_an_expired_batch_stops_with_one_line_and_loses_nothing(fake_gemini, tmp_path):
    fake_gemini.set_responder(echo)
    journal = tmp_path / "j.jsonl"
    earlier = Engine(cfg(), journal=journal, progress=False).run(requests(2))  # answers recorded before
    assert all(r.ok for r in earlier)
    provider = GeminiProvider(cfg())
    provider.batch_inline_bytes = 1500  # two or three requests a batch: several batches

    def expire_the_second(req):  # batch ids count from 1 per test: the second batch created expires
        expired = req.method == "GET" and req.path.endswith("/batches/fake000002")
        fake_gemini.batch_end = "BATCH_STATE_EXPIRED" if expired else "BATCH_STATE_SUCCEEDED"

    fake_gemini.add_hook(expire_the_second)
    engine = Engine(cfg(), journal=journal, provider=provider, batch=True, batch_poll_s=0.01, progress=False)
    with pytest.raises(FatalError) as err:
        engine.run(requests(8))
    message = str(err.value)
    assert "\n" not in message and "ended JOB_STATE_EXPIRED" in message and "rerun" in message
    made = creates(fake_gemini)
    assert made >= 2
    state = json.loads((tmp_path / "j.jsonl.batch.json").read_text())
    assert len(state["batches"]) == made - 1  # the expired batch is forgotten, the finished ones kept
    fake_gemini.reset()
    fake_gemini.set_responder(echo)
    results = Engine(cfg(), journal=journal, provider=provider, batch=True, batch_poll_s=0.01,
                     progress=False).run(requests(8))
    assert [(r.key, r.data) for r in results] == [(f"k{i}", {"answer": f"question {i}"}) for i in range(8)]
    assert all(r.cached for r in results[:2])  # recorded before the failure: still there, not asked again
    assert creates(fake_gemini) == 1  # only the expired batch's requests went out again
    assert sum("/batches/" in p for p in paths(fake_gemini, "GET")) == made  # the finished ones were read back
    (resent,) = fake_gemini.batches.values()
    expired_keys = set(state["keys"]) - {k for b in state["batches"] for k in b["keys"]}
    assert {r["metadata"]["key"] for r in resent["requests"]} == expired_keys


def test_synthesize_with_gemini_batch_api(tmp_path, fake_gemini):
    """`synthesize.batch_api` works for provider gemini (it was refused before issue 11)."""
    service = ("service.synthesize={provider: gemini, model: gemini-2.5-flash, rpm: null, price_input_per_1m: 1.0, "
               "price_output_per_1m: 4.0}")
    cfg_ = load_config(make_config(tmp_path), [service, "synthesize.batch_api=true",
                                               "synthesize.length_filter.enabled=false",  # short fake answers
                                               "synthesize.decontaminate.semantic=false", "privacy.scrub=false"])
    store = open_store(cfg_)
    prepare.run(cfg_, store)
    fake_gemini.set_responder(lambda body: {"contents": [
        {"instruction": fresh(len(json.dumps(body)), k), "response": "A fine answer."} for k in range(6)]})
    m = synthesize.run(cfg_, store, 1, samples=8)
    assert m.counts["kept"] == 8, m.counts
    assert creates(fake_gemini) == 1 and not [p for p in paths(fake_gemini) if p.endswith(":generateContent")]
    rep = fake_gemini.reported
    assert m.usage["cost_usd"] == pytest.approx((rep["prompt_tokens"] * 1.0 + rep["completion_tokens"] * 4.0) / 2e6)
