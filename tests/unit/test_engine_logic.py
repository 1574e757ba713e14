"""The engine's own logic against FakeLLM: re-asking, failures with their raw text, the journal, retries, the token
estimate the rate limiter books, the bucket a 429 names."""

from __future__ import annotations

import pytest

from pipeline.llm import Engine, FatalError, Request, RetryableError
from pipeline.llm.asker import at_account_limit, bucket_of
from pipeline.llm.usage import DEFAULT_OUTPUT_ESTIMATE, OutputMean, PromptGauge, estimate_tokens, prompt_tokens
from tests.fakes.fake_llm import FakeLLM, bad_key, rate_limited, refused
from tests.fakes.openai_fixtures import service_cfg

SCHEMA = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}


def cfg(**kw):
    return service_cfg(**{"rpm": None, "concurrency": 1, "max_retries": 2, "schema_retries": 2, **kw})


def requests(n: int, schema: dict | None = SCHEMA) -> list[Request]:
    return [Request(key=f"k{i}", messages=[{"role": "user", "content": f"question {i}"}], schema=schema)
            for i in range(n)]


def test_a_reply_that_fails_the_schema_is_reasked_with_the_problem_then_accepted():
    fake = FakeLLM().enqueue({"score": "high"}, {"score": 7})
    engine = Engine(cfg(), provider=fake, progress=False)
    [r] = engine.run(requests(1))
    assert r.ok and r.data == {"score": 7} and r.attempts == 2 and r.error is None
    assert r.raw == '{"score": 7}' and r.usage["requests"] == engine.usage["requests"] == 2
    first, second = fake.history
    assert first.messages == [{"role": "user", "content": "question 0"}] and first.schema == SCHEMA
    assert second.messages[1] == {"role": "assistant", "content": '{"score": "high"}'}
    assert "'high' is not of type 'integer'" in second.messages[2]["content"]


def test_a_reply_still_wrong_after_schema_retries_is_a_failure_with_its_raw_text():
    fake = FakeLLM().enqueue("no json here", {"score": "x"}, '{"points": 3}', {"score": 1})
    [r] = Engine(cfg(schema_retries=2), provider=fake, progress=False).run(requests(1))
    assert not r.ok and r.data is None and r.raw == '{"points": 3}' and r.attempts == 3
    assert r.error.startswith("reply does not match the schema after 3 tries") and "'score'" in r.error
    assert len(fake.history) == 3 and list(fake.queue) == [{"score": 1}]


def test_a_second_run_with_the_same_journal_sends_nothing(tmp_path):
    fake = FakeLLM()
    first = Engine(cfg(), journal=tmp_path / "j.jsonl", provider=fake, progress=False).run(requests(3))
    assert all(r.ok for r in first) and len(fake.history) == 3
    engine = Engine(cfg(), journal=tmp_path / "j.jsonl", provider=fake, progress=False)
    again = engine.run(requests(3))
    assert len(fake.history) == 3, "the second run sent requests"
    assert [r.data for r in again] == [r.data for r in first] and all(r.cached for r in again)
    assert engine.usage["requests"] == 0 and engine.usage["cached"] == 3


def test_a_rate_limit_is_retried_and_a_refusal_fails_only_its_item():
    fake = FakeLLM().enqueue(rate_limited(retry_after=0.01), "one", refused(), "three")
    results = Engine(cfg(), provider=fake, progress=False).run(requests(3, schema=None))
    assert [(r.ok, r.data, r.attempts) for r in results] == [(True, "one", 2), (False, None, 1), (True, "three", 1)]
    assert "400" in results[1].error


def test_retries_run_out_into_a_failure_not_an_exception():
    fake = FakeLLM().enqueue(*[rate_limited(retry_after=0.0)] * 3)
    [r] = Engine(cfg(max_retries=2), provider=fake, progress=False).run(requests(1, schema=None))
    assert not r.ok and r.error.startswith("gave up after 3 attempts") and r.attempts == 3


def test_a_fatal_error_stops_the_run_and_keeps_what_was_answered(tmp_path):
    fake = FakeLLM().enqueue("zero", bad_key())
    with pytest.raises(FatalError, match="401"):
        Engine(cfg(), journal=tmp_path / "j.jsonl", provider=fake, progress=False).run(requests(4, schema=None))
    assert len(fake.history) == 2
    again = Engine(cfg(), journal=tmp_path / "j.jsonl", provider=fake, progress=False).run(requests(1, schema=None))
    assert again[0].cached and again[0].data == "zero"


def test_the_registry_builds_the_fake_for_an_engine_from_config(fake_llm):
    fake_llm.responder = lambda messages, schema, params: {"score": len(messages[-1]["content"])}
    results = Engine(cfg(), progress=False).run(requests(2) + requests(1))  # no API key needed, none sent
    assert [r.data for r in results] == [{"score": 10}] * 3 and [r.cached for r in results] == [False, False, True]
    assert len(fake_llm.history) == 2 and fake_llm.closed == 1


def test_batch_needs_a_provider_with_a_batch_api():
    with pytest.raises(FatalError, match="Batch API"):
        Engine(cfg(), provider=FakeLLM(), batch=True, progress=False).run(requests(1))


def test_without_max_tokens_the_limiter_books_the_longest_recent_reply():
    replies = iter(["one two three four five six", "one two", "x"])
    booked = []
    fake = FakeLLM()
    engine = Engine(cfg(tpm=1_000_000), provider=fake, progress=False)

    def responder(messages, schema, params):
        booked.append(engine.limiter._grants[-1].tokens)  # what the limiter booked for this send, before its reply
        return next(replies)

    fake.responder = responder
    reqs = requests(3, schema=None)
    engine.run(reqs)
    prompt = prompt_tokens(reqs[0].messages, None)
    # the prompt's count is calibrated by the replies too (#24): the fake counts fewer tokens than 3 chars each
    calibrated = engine.asker.gauge.tokens(prompt)
    assert calibrated < prompt
    # 512, then the longest recent reply (#24: the mean let a window run over when replies vary)
    assert booked == [prompt + DEFAULT_OUTPUT_ESTIMATE, calibrated + 6, calibrated + 6]
    assert engine.asker.outputs.value() == 3  # ceil(mean(6, 2, 1))
    assert estimate_tokens(reqs[0].messages, None, {"max_tokens": 50}, engine.asker.outputs) == prompt + 50


def test_output_mean_starts_at_the_default_and_follows_replies():
    mean = OutputMean()
    assert mean.value() == DEFAULT_OUTPUT_ESTIMATE
    for tokens in (100, 301):
        mean.observe(tokens)
    assert mean.value() == 201


@pytest.mark.parametrize("message, bucket", [
    (("openai gpt-4o: HTTP 429: Rate limit reached for gpt-4o in organization org-x on requests per min (RPM): "
     "Limit 500, Used 500, Requested 1. Please try again in 120ms."), "requests"),
    (("openai gpt-4o: HTTP 429: Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM): "
     "Limit 30000, Used 29500, Requested 900. Please try again in 800ms."), "tokens"),
    (("gemini: HTTP 429 RESOURCE_EXHAUSTED: Quota exceeded for metric: "
     "generativelanguage.googleapis.com/generate_content_paid_tier_input_token_count, limit: 1000000"), "tokens"),
    (("gemini: HTTP 429 RESOURCE_EXHAUSTED: Quota exceeded for metric: "
     "generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 15"), "requests"),
    ("fake: HTTP 429: slow down", None),
])
def test_a_429_names_the_bucket_it_belongs_to(message, bucket):
    assert bucket_of(RetryableError(message, retry_after=1.0, status=429)) == bucket
    # each of these says the account is at its limit, except the last (#24): that one holds only its own request
    assert at_account_limit(RetryableError(message, retry_after=1.0, status=429)) is (bucket is not None)


@pytest.mark.parametrize("message, exhausted, account", [
    ("openai gpt-4o: HTTP 429: Too many requests", "requests", True),  # x-ratelimit-remaining-requests: 0
    ("openai gpt-4o: HTTP 429: Too many requests", None, False),
    ("gemini: HTTP 429 RESOURCE_EXHAUSTED: Resource has been exhausted (e.g. check quota).", None, False),
    ("fake: HTTP 429: Rate limit reached (fake)", None, False),
])
def test_only_a_429_that_says_the_account_is_at_its_limit_counts_as_one(message, exhausted, account):
    error = RetryableError(message, retry_after=1.0, status=429, exhausted=exhausted)
    assert at_account_limit(error) is account


def test_the_prompt_gauge_follows_the_highest_recent_ratio():
    gauge = PromptGauge()
    assert gauge.tokens(300) == 300  # no reply yet: prompt_tokens as counted
    gauge.observe(300, 150)
    gauge.observe(300, 120)
    assert gauge.tokens(300) == 150  # the dearest of the recent replies
