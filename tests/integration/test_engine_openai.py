"""The engine against the fake OpenAI server, through the real openai SDK."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline.llm import Engine, FatalError, Request
from tests.fakes.http_base import error_reply, windows_exceeded
from tests.fakes.openai_fixtures import service_cfg

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}, "score": {"type": "integer", "minimum": 1,
                                                                                    "maximum": 100}},
          "required": ["answer", "score"], "additionalProperties": False}


def requests(n: int, schema: dict | None = SCHEMA, prefix: str = "question") -> list[Request]:
    return [Request(key=f"k{i}", messages=[{"role": "user", "content": f"{prefix} {i}"}], schema=schema)
            for i in range(n)]


def fast(**kw):
    return {"rpm": None, "max_retries": 6, "schema_retries": 2, "timeout_s": 5, **kw}


def question(entry: dict) -> str:
    return entry["body"]["messages"][0]["content"]


def test_faulty_service_loses_and_duplicates_nothing(fake_openai, tmp_path):
    fake_openai.set_faults(rate_429=0.1, rate_500=0.1, rate_malformed=0.1, rate_schema_violation=0.1,
                           retry_after=0.05, seed=7)
    fake_openai.set_responder(lambda body: {"answer": body["messages"][0]["content"], "score": 42})
    cfg = service_cfg(**fast(concurrency=8, price_input_per_1m=2.5, price_output_per_1m=10.0))
    engine = Engine(cfg, journal=tmp_path / "j.jsonl", backoff_base=0.02, progress=False)
    results = engine.run(requests(200))

    assert [r.key for r in results] == [f"k{i}" for i in range(200)]
    assert set(fake_openai.fault_counts) == {"429", "500", "malformed", "schema_violation"}
    for i, r in enumerate(results):
        if r.ok:
            assert r.data == {"answer": f"question {i}", "score": 42}
        else:
            assert r.error and r.raw is not None or "gave up" in r.error
    assert sum(r.ok for r in results) >= 190
    # usage adds up to what the fake reported, cost from the prices
    rep = fake_openai.reported
    assert engine.usage["requests"] == rep["requests"] == sum(r.usage["requests"] for r in results)
    assert engine.usage["input_tokens"] == rep["prompt_tokens"]
    assert engine.usage["output_tokens"] == rep["completion_tokens"]
    assert engine.usage["cost_usd"] == pytest.approx((rep["prompt_tokens"] * 2.5 + rep["completion_tokens"] * 10) / 1e6)
    # the journal holds each answered item once; a rerun asks only for the failures
    lines = [json.loads(x) for x in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert sorted(e["request_key"] for e in lines) == sorted(r.key for r in results if r.ok)
    fake_openai.reset()
    again = Engine(cfg, journal=tmp_path / "j.jsonl", progress=False).run(requests(200))
    assert [r.data for r in again if r.cached] == [r.data for r in results if r.ok]
    assert len(fake_openai.log) == sum(not r.ok for r in results) and again[0].usage["cost_usd"] == 0


def test_schema_violation_is_reasked_with_the_problem_then_recorded_with_raw(fake_openai):
    fake_openai.set_responder(lambda body: {"answer": "no score"})
    results = Engine(service_cfg(**fast(schema_retries=2)), progress=False).run(requests(1))
    r = results[0]
    assert not r.ok and r.raw == '{"answer": "no score"}' and "'score' is a required property" in r.error
    bodies = [e["body"] for e in fake_openai.log]
    assert len(bodies) == 3
    assert "'score' is a required property" in bodies[1]["messages"][-1]["content"]
    assert bodies[0]["response_format"]["type"] == "json_schema"
    assert bodies[0]["response_format"]["json_schema"]["strict"] is True


def test_killed_run_resumes_without_asking_answered_items_again(fake_openai, tmp_path):
    fake_openai.set_faults(latency_s=0.15)
    journal = tmp_path / "j.jsonl"
    script = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
              "from pipeline.llm import Engine, Request\n"
              "from tests.fakes.openai_fixtures import service_cfg\n"
              "reqs = [Request(key=f'k{i}', messages=[{'role': 'user', 'content': f'question {i}'}]) "
              "for i in range(60)]\n"
              f"Engine(service_cfg(rpm=None, concurrency=4), journal={str(journal)!r}, progress=False).run(reqs)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_text().count("\n") >= 12:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # let the fake finish logging what the killed process had already sent
    answered = {json.loads(x)["request_key"] for x in journal.read_text().splitlines() if x.endswith("}")}
    assert 12 <= len(answered) < 60
    before = len(fake_openai.log)
    fake_openai.set_faults()
    reqs = [Request(key=f"k{i}", messages=[{"role": "user", "content": f"question {i}"}]) for i in range(60)]
    results = Engine(service_cfg(rpm=None, concurrency=4), journal=journal, progress=False).run(reqs)
    assert all(r.ok for r in results) and [r.data for r in results] == [f"question {i}" for i in range(60)]
    asked_again = Counter(question(e) for e in fake_openai.log[before:])
    assert not {f"question {k[1:]}" for k in answered} & set(asked_again)
    assert max(asked_again.values()) == 1 and len(asked_again) == 60 - len(answered)


def test_retry_after_is_honoured(fake_openai):
    def once(req):
        if len(fake_openai.log) == 1:
            return error_reply(429, "slow down", headers={"Retry-After": "1"})
        return None

    fake_openai.add_hook(once)
    results = Engine(service_cfg(**fast(concurrency=1)), backoff_base=0.01, progress=False).run(
        requests(1, schema=None))
    assert results[0].ok and results[0].attempts == 2
    first, second = fake_openai.log
    assert first["status"] == 429 and second["t"] - first["t"] >= 1.0


def first_reply_then_slow(fake, first_reply):
    """A hook: the first request gets ``first_reply()`` (a 429); every later one is answered 0.3 s late."""
    sent = []

    def hook(req):
        with fake.lock:
            first = not sent
            sent.append(True)
        if first:
            return first_reply()
        time.sleep(0.3)
        return None

    return hook


def test_an_account_limit_429_pauses_every_request_not_only_its_own(fake_openai):
    # A 429 whose headers say the account has no requests left (x-ratelimit-remaining-requests: 0) means the whole
    # account is over its limit: at concurrency 4, the requests that free their slots after it must wait out the
    # pause too, not fill the slots at once. The other requests in flight answer well after the 429 reached the engine
    headers = {"Retry-After": "1", "x-ratelimit-remaining-requests": "0"}
    fake_openai.add_hook(first_reply_then_slow(fake_openai, lambda: error_reply(429, "slow down", headers=headers)))
    engine = Engine(service_cfg(**fast(concurrency=4)), backoff_base=0.01, progress=False)
    results = engine.run(requests(12, schema=None))
    assert all(r.ok for r in results) and sum(r.attempts for r in results) == 13
    assert engine.limiter.paused_until("requests") > 0 and engine.limiter.paused_until("tokens") == 0.0
    log = sorted(fake_openai.log, key=lambda e: e["t"])
    t429 = next(e["t"] for e in log if e["status"] == 429)
    # the first 4 arrivals were granted before the 429; every later send waited out its Retry-After
    assert [round(e["t"] - t429, 2) for e in log[4:] if e["t"] - t429 < 1.0] == []


def test_a_random_429_holds_only_its_own_request(fake_openai):
    # issue #24: a 429 that does not say the account is at its limit ("slow down", no x-ratelimit-remaining-* at 0)
    # is about that request: it alone waits its Retry-After, the others go on sending meanwhile
    fake_openai.add_hook(first_reply_then_slow(fake_openai, lambda: error_reply(429, "slow down",
                                                                                headers={"Retry-After": "1"})))
    engine = Engine(service_cfg(**fast(concurrency=4)), backoff_base=0.01, progress=False)
    results = engine.run(requests(12, schema=None))
    assert all(r.ok for r in results) and sum(r.attempts for r in results) == 13
    assert engine.limiter.paused_until("requests") == engine.limiter.paused_until("tokens") == 0.0
    log = sorted(fake_openai.log, key=lambda e: e["t"])
    refused = next(e for e in log if e["status"] == 429)
    t429 = refused["t"]
    assert len([e for e in log if 0 < e["t"] - t429 < 0.9]) >= 4  # others sent within the Retry-After
    retried = max(e["t"] for e in log if e["body"]["messages"] == refused["body"]["messages"])
    assert retried - t429 >= 1.0  # and the refused one waited its own Retry-After


@pytest.mark.parametrize("bucket, other", [("requests", "tokens"), ("tokens", "requests")])
def test_a_429_that_names_its_limit_pauses_that_bucket_for_its_retry_after(fake_openai, bucket, other):
    # OpenAI's 429 says which limit was hit ("on requests per min (RPM)" / "on tokens per min (TPM)"): the engine
    # holds that bucket for the Retry-After, leaves the other alone, and the 429'd request waits in line with the rest
    fake_openai.add_hook(first_reply_then_slow(fake_openai, lambda: fake_openai.rate_limited(bucket, 1.0)))
    engine = Engine(service_cfg(**fast(concurrency=4)), backoff_base=0.01, progress=False)
    results = engine.run(requests(12, schema=None))
    assert all(r.ok for r in results) and sum(r.attempts for r in results) == 13
    assert engine.limiter.paused_until(bucket) > 0 and engine.limiter.paused_until(other) == 0.0
    log = sorted(fake_openai.log, key=lambda e: e["t"])
    t429 = next(e["t"] for e in log if e["status"] == 429)
    # every send granted after the 429 came back (all but the first 4 arrivals) waited out its Retry-After: every
    # request books tokens, so a token-bucket pause holds them as a request-bucket one does
    assert [round(e["t"] - t429, 2) for e in log[4:] if e["t"] - t429 < 1.0] == []
    assert len(log) == 13 and log[-1]["status"] == 200  # and sending resumed after it


def test_a_server_limit_the_config_does_not_know_is_learnt_from_its_429s(fake_openai):
    # the fake refuses a 6th request in any 1 s as OpenAI does ("on requests per min (RPM)", Retry-After until the
    # window has room): the engine holds only the request bucket for that long each time, and every item is answered
    fake_openai.set_rate_limit(rpm=5, period=1.0)
    engine = Engine(service_cfg(**fast(concurrency=4)), progress=False)
    results = engine.run(requests(12, schema=None))
    assert all(r.ok for r in results) and fake_openai.fault_counts["over_limit"] >= 1
    assert engine.limiter.paused_until("requests") > 0 and engine.limiter.paused_until("tokens") == 0.0
    refused = [e for e in fake_openai.log if e["status"] == 429]
    assert refused and all(e["fault"] == "over_limit" for e in refused)
    assert len(fake_openai.log) == 12 + len(refused)


def in_flight_counter(fake, seconds: float) -> list:
    """A hook that holds each request ``seconds`` and keeps [now, most] requests in flight at the fake."""
    counts = [0, 0]

    def count(req):
        with fake.lock:
            counts[0] += 1
            counts[1] = max(counts[1], counts[0])
        time.sleep(seconds)
        with fake.lock:
            counts[0] -= 1

    fake.add_hook(count)
    return counts


def test_auto_concurrency_keeps_in_flight_within_its_cap(fake_openai):
    counts = in_flight_counter(fake_openai, 0.05)
    # 6000 rpm would want 150 in flight (100/s x 1 s x 1.5) before the first reply: the cap holds it to 3
    results = Engine(service_cfg(**fast(rpm=6000, concurrency="auto", max_concurrency=3)), progress=False).run(
        requests(24, schema=None))
    assert all(r.ok for r in results) and counts[1] == 3


def test_the_default_concurrency_follows_the_limit_not_a_fixed_number(fake_openai):
    # 600 rpm (one send every 0.1 s) at 0.3 s a reply needs about 3 in flight: the default (auto) overlaps them
    counts = in_flight_counter(fake_openai, 0.3)
    engine = Engine(service_cfg(rpm=600, max_retries=0), progress=False)
    assert engine.cfg.concurrency == "auto"
    results = engine.run(requests(20, schema=None))
    assert all(r.ok for r in results) and counts[1] >= 2
    assert engine.inflight.p90 >= 0.3 and engine.inflight.sending() == 0  # every send's latency was observed


def test_bad_key_is_fatal_at_once(fake_openai):
    fake_openai.api_key = "sk-another-key"
    with pytest.raises(FatalError, match="401"):
        Engine(service_cfg(**fast(concurrency=1)), progress=False).run(requests(5))
    assert len(fake_openai.log) == 1, [(e["path"], e["status"], e["t"]) for e in fake_openai.log]


def test_missing_key_names_the_variable(fake_openai, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(FatalError, match="OPENAI_API_KEY"):
        Engine(service_cfg(), progress=False).run(requests(1))
    assert fake_openai.log == []


def test_bad_request_fails_only_that_item(fake_openai):
    def responder(body):
        if body["messages"][0]["content"] == "question 2":
            return error_reply(400, "content policy (fake)")
        return {"answer": "fine", "score": 3}

    fake_openai.set_responder(responder)
    results = Engine(service_cfg(**fast()), progress=False).run(requests(5))
    assert [r.ok for r in results] == [True, True, False, True, True]
    assert "400" in results[2].error and results[2].attempts == 1


def test_truncated_reply_reports_length(fake_openai):
    fake_openai.set_responder(lambda body: "one two three four five")
    results = Engine(service_cfg(**fast(params={"max_tokens": 3})), progress=False).run(requests(1, schema=None))
    assert results[0].ok and results[0].data == "one two three" and results[0].finish_reason == "length"
    assert fake_openai.log[0]["body"]["max_tokens"] == 3


def test_timeouts_are_retried(fake_openai):
    fake_openai.set_faults(hang_s=1.5, rate_hang=0.3, seed=1)
    results = Engine(service_cfg(**fast(timeout_s=0.4, concurrency=4)), backoff_base=0.01,
                     progress=False).run(requests(10, schema=None))
    assert all(r.ok for r in results) and fake_openai.fault_counts["hang"] >= 1
    assert sum(r.attempts for r in results) == 10 + fake_openai.fault_counts["hang"]


def test_same_question_twice_is_asked_once_and_run_works_inside_a_loop(fake_openai):
    reqs = requests(3, schema=None) + requests(3, schema=None)

    async def inside():
        return Engine(service_cfg(**fast()), progress=False).run(reqs)

    results = asyncio.run(inside())
    assert [r.data for r in results] == [f"question {i}" for i in range(3)] * 2
    assert len(fake_openai.log) == 3 and [r.cached for r in results] == [False] * 3 + [True] * 3


def test_without_structured_output_a_fenced_reply_is_parsed(fake_openai):
    fake_openai.set_responder(lambda body: '```json\n{"answer": "a", "score": 5}\n```')
    results = Engine(service_cfg(**fast(structured_output=False)), progress=False).run(requests(1))
    assert results[0].data == {"answer": "a", "score": 5}
    assert "response_format" not in fake_openai.log[0]["body"]


def test_requests_per_window_stay_within_rpm_scaled(fake_openai):
    # rpm=20 in a 1.5 s window: the same arithmetic as 20 rpm per minute, 40 times faster
    engine = Engine(service_cfg(rpm=20, concurrency=8, max_retries=0), period=1.5, progress=False)
    results = engine.run(requests(32, schema=None))
    assert all(r.ok for r in results)
    times = [e["t"] for e in fake_openai.log]
    assert windows_exceeded(times, 20, 1.5) <= 0
    rate = (len(times) - 1) / (max(times) - min(times)) * 1.5
    assert rate >= 0.9 * 20


@pytest.mark.slow
def test_requests_per_minute_hold_over_real_minutes(fake_openai):
    engine = Engine(service_cfg(rpm=100, concurrency=8, max_retries=0), progress=False)
    results = engine.run(requests(150, schema=None))
    assert all(r.ok for r in results)
    times = [e["t"] for e in fake_openai.log]
    assert windows_exceeded(times, 100, 60.0) <= 0
    assert (len(times) - 1) / (max(times) - min(times)) * 60 >= 95


def test_importing_the_engine_stays_light():
    code = ("import sys, pipeline.llm; heavy = {'openai', 'google.genai', 'torch', 'transformers', 'tqdm'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_a_fully_cached_rerun_needs_no_key_and_sends_nothing(fake_openai, tmp_path, monkeypatch):
    first = Engine(service_cfg(**fast()), journal=tmp_path / "j.jsonl", progress=False).run(requests(4))
    monkeypatch.delenv("OPENAI_API_KEY")
    before = len(fake_openai.log)
    engine = Engine(service_cfg(**fast()), journal=tmp_path / "j.jsonl", progress=False)
    again = engine.run(requests(4))
    assert [r.data for r in again] == [r.data for r in first] and all(r.cached for r in again)
    assert len(fake_openai.log) == before and engine.usage["cached"] == 4 and engine.usage["cost_usd"] == 0


def test_exhausted_quota_is_fatal_not_retried(fake_openai):
    # OpenAI answers an empty account with 429 insufficient_quota: waiting does not help
    fake_openai.add_hook(lambda req: error_reply(429, "You exceeded your current quota", code="insufficient_quota",
                                                 type="insufficient_quota"))
    with pytest.raises(FatalError, match="quota"):
        Engine(service_cfg(**fast(concurrency=1)), progress=False).run(requests(3))
    assert len(fake_openai.log) == 1


def test_a_token_limit_holds_at_the_server_with_estimates_calibrated_by_the_replies(fake_openai):
    # issue #24: the fake holds 600 tokens a 2 s window as OpenAI holds its TPM; prompts of 60 words echoed back
    # (~120 tokens a request) and no max_tokens: the first guesses (3 chars a token, 512 output tokens) are dear,
    # the replies calibrate them, and the server never refuses one for tokens
    fake_openai.set_rate_limit(tpm=600, period=2.0)
    engine = Engine(service_cfg(**fast(tpm=600)), period=2.0, progress=False)
    reqs = [Request(key=str(i), messages=[{"role": "user", "content": " ".join([f"q{i}"] + ["word"] * 59)}])
            for i in range(16)]
    results = engine.run(reqs)
    assert all(r.ok for r in results) and fake_openai.fault_counts["over_limit"] == 0
    assert engine.asker.gauge.ratio < 1.0  # the replies taught it that a word is more than 3 characters
    ok = sorted(e["t"] for e in fake_openai.log if e["status"] == 200)
    assert windows_exceeded(ok, 600 // 120, 2.0) <= 0
