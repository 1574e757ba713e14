"""Issue #10's fault suite: at 10% and 30% injected faults (429 with Retry-After, 5xx, malformed JSON, schema
violations) the engine loses no answer and pays for none twice; a rerun asks only what is still missing."""

from __future__ import annotations

from collections import Counter

import pytest

from pipeline.llm import Engine
from tests.fakes.openai_fixtures import service_cfg

from .test_engine_openai import fast, requests

N = 120


def paid_answers(fake) -> Counter:
    """Questions the fake answered with a good reply (status 200, no injected fault), counted per question."""
    return Counter(e["body"]["messages"][0]["content"] for e in fake.log  # a re-ask keeps the question first
                   if e["status"] == 200 and not e.get("fault"))


@pytest.mark.parametrize("rate", [0.10, 0.30])
def test_faults_lose_nothing_and_pay_nothing_twice(fake_openai, tmp_path, rate):
    quarter = rate / 4
    fake_openai.set_faults(rate_429=quarter, rate_500=quarter, rate_malformed=quarter,
                           rate_schema_violation=quarter, retry_after=0.05, seed=11)
    fake_openai.set_responder(lambda body: {"answer": body["messages"][0]["content"], "score": 42})
    cfg = service_cfg(**fast(concurrency=8, max_retries=8, schema_retries=4))
    journal = tmp_path / "j.jsonl"
    first = Engine(cfg, journal=journal, backoff_base=0.01, progress=False).run(requests(N))
    sent_first = len(fake_openai.log)
    good_first = paid_answers(fake_openai)
    again = Engine(cfg, journal=journal, backoff_base=0.01, progress=False).run(requests(N))  # a rerun
    answered = [r for r in again if r.ok]
    lost = N - len(answered)
    wrong = sum(1 for i, r in enumerate(again) if r.ok and r.data != {"answer": f"question {i}", "score": 42})
    repeats = sum(1 for r in first if r.ok) - sum(1 for r in again if r.ok and r.cached)
    duplicated = sum(n - 1 for n in paid_answers(fake_openai).values() if n > 1)  # first run and rerun together
    print(f"\n{rate:.0%} faults: {N} questions, {sent_first} requests ({dict(fake_openai.fault_counts)}), "
          f"answered {sum(r.ok for r in first)} first, {len(answered)} after a rerun; lost {lost}, wrong {wrong}, "
          f"journaled answers asked again on rerun {repeats}, good answers paid twice {duplicated}")
    assert lost == 0 and wrong == 0 and duplicated == 0 and len(good_first) == N
    assert repeats == 0  # every answer of the first run came back from the journal, none was paid twice
    assert all(r.cached for r, f in zip(again, first) if f.ok)
