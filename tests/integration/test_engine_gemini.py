"""The engine against the fake Gemini server, through the real google-genai SDK: the same core checks."""

from __future__ import annotations

import pytest

from pipeline.llm import Engine, FatalError, Request
from tests.fakes.http_base import error_reply, json_reply, windows_exceeded
from tests.fakes.openai_fixtures import service_cfg

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}, "score": {"type": "integer"}},
          "required": ["answer", "score"]}


def cfg(**kw):
    return service_cfg("gemini", **{"rpm": None, "max_retries": 6, "schema_retries": 2, "timeout_s": 5, **kw})


def requests(n: int, schema: dict | None = SCHEMA) -> list[Request]:
    return [Request(key=f"k{i}", messages=[{"role": "system", "content": "be brief"},
                                           {"role": "user", "content": f"question {i}"}], schema=schema)
            for i in range(n)]


def user_text(body: dict) -> str:
    return body["contents"][0]["parts"][0]["text"]


def test_faulty_service_loses_and_duplicates_nothing(fake_gemini, tmp_path):
    fake_gemini.set_faults(rate_429=0.1, rate_500=0.1, rate_malformed=0.1, rate_schema_violation=0.1,
                           retry_after=0.05, seed=3)
    fake_gemini.set_responder(lambda body: {"answer": user_text(body), "score": 7})
    engine = Engine(cfg(price_input_per_1m=0.1, price_output_per_1m=0.4), journal=tmp_path / "j.jsonl",
                    backoff_base=0.02, progress=False)
    results = engine.run(requests(120))
    assert [r.key for r in results] == [f"k{i}" for i in range(120)]
    assert set(fake_gemini.fault_counts) == {"429", "500", "malformed", "schema_violation"}
    assert all(r.data == {"answer": f"question {i}", "score": 7} for i, r in enumerate(results) if r.ok)
    assert all(r.error and r.raw is not None for r in results if not r.ok and "gave up" not in r.error)
    assert sum(r.ok for r in results) >= 114
    rep = fake_gemini.reported
    assert engine.usage["requests"] == rep["requests"]
    assert (engine.usage["input_tokens"], engine.usage["output_tokens"]) == (rep["prompt_tokens"],
                                                                             rep["completion_tokens"])
    assert engine.usage["cost_usd"] == pytest.approx((rep["prompt_tokens"] * 0.1 + rep["completion_tokens"] * 0.4) / 1e6)
    body = next(e["body"] for e in fake_gemini.log if e["status"] == 200)
    assert body["systemInstruction"]["parts"][0]["text"] == "be brief"
    assert body["generationConfig"]["responseMimeType"] == "application/json"
    assert body["generationConfig"]["responseJsonSchema"] == SCHEMA


def test_schema_violation_is_reasked_with_model_turn(fake_gemini):
    fake_gemini.set_responder(lambda body: {"answer": "no score"})
    r = Engine(cfg(schema_retries=1), progress=False).run(requests(1))[0]
    assert not r.ok and r.raw == '{"answer": "no score"}' and "'score' is a required property" in r.error
    second = fake_gemini.log[1]["body"]["contents"]
    assert [c["role"] for c in second] == ["user", "model", "user"]


def test_retry_after_is_honoured(fake_gemini):
    fake_gemini.add_hook(lambda req: error_reply(429, "quota", headers={"Retry-After": "1"})
                         if len(fake_gemini.log) == 1 else None)
    r = Engine(cfg(concurrency=1), backoff_base=0.01, progress=False).run(requests(1, schema=None))[0]
    assert r.ok and r.data == "question 0" and r.attempts == 2
    first, second = fake_gemini.log
    assert second["t"] - first["t"] >= 1.0


def test_bad_key_is_fatal_at_once(fake_gemini):
    fake_gemini.api_key = "another-key"
    with pytest.raises(FatalError, match="API key not valid"):
        Engine(cfg(concurrency=1), progress=False).run(requests(5))
    assert len(fake_gemini.log) == 1


def test_missing_key_names_the_variable(fake_gemini, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(FatalError, match="GEMINI_API_KEY"):
        Engine(cfg(), progress=False).run(requests(1))


def test_bad_request_fails_only_that_item(fake_gemini):
    fake_gemini.set_responder(lambda body: error_reply(400, "bad part") if user_text(body) == "question 1"
                              else {"answer": "a", "score": 1})
    results = Engine(cfg(), progress=False).run(requests(3))
    assert [r.ok for r in results] == [True, False, True] and results[1].attempts == 1


def test_max_tokens_maps_and_truncation_reports_length(fake_gemini):
    fake_gemini.set_responder(lambda body: "one two three four")
    r = Engine(cfg(params={"max_tokens": 2, "temperature": 0.2}), progress=False).run(requests(1, schema=None))[0]
    assert r.ok and r.data == "one two" and r.finish_reason == "length"
    gen = fake_gemini.log[0]["body"]["generationConfig"]
    assert gen == {"maxOutputTokens": 2, "temperature": 0.2}


def test_unknown_param_is_a_clear_error(fake_gemini):
    with pytest.raises(FatalError, match="unknown generation parameter"):
        Engine(cfg(params={"tempature": 1}), progress=False).run(requests(1))


def test_requests_per_window_stay_within_rpm_scaled(fake_gemini):
    results = Engine(cfg(rpm=20, max_retries=0), period=1.5, progress=False).run(requests(30, schema=None))
    assert all(r.ok for r in results)
    assert windows_exceeded([e["t"] for e in fake_gemini.log], 20, 1.5) <= 0


def test_timeouts_are_retried(fake_gemini):
    fake_gemini.set_faults(hang_s=1.5, rate_hang=0.3, seed=2)
    results = Engine(cfg(timeout_s=0.4, concurrency=4), backoff_base=0.01, progress=False).run(
        requests(8, schema=None))
    assert all(r.ok for r in results) and fake_gemini.fault_counts["hang"] >= 1
    assert sum(r.attempts for r in results) == 8 + fake_gemini.fault_counts["hang"]


def test_google_retry_info_delay_is_honoured(fake_gemini):
    # Gemini's own 429 says how long to wait in google.rpc.RetryInfo, not in a header
    body = {"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED",
                      "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]}}
    fake_gemini.add_hook(lambda req: json_reply(body, status=429) if len(fake_gemini.log) == 1 else None)
    r = Engine(cfg(concurrency=1), backoff_base=0.01, progress=False).run(requests(1, schema=None))[0]
    assert r.ok and r.attempts == 2
    first, second = fake_gemini.log
    assert second["t"] - first["t"] >= 1.0
