"""Issue 19, item 3: the spend cap holds when the service's params set no ``max_tokens``.

Every request carries the token limit its reservation assumed (``DEFAULT_MAX_OUTPUT_TOKENS``, added
by the provider at send time), so a long reply is cut there instead of costing more than was
reserved. Before: 16 requests in flight, replies of 4,000 words, spent $0.60-0.72 on a $0.50 cap and
$0.16 on a $0.10 cap (OpenAI and Gemini alike). The journal key is made from the params as the user
wrote them, so answers journaled before the limit was sent are still reused.
"""

from __future__ import annotations

import json

import pytest

from pipeline.config import build_config
from pipeline.llm import Engine, Request
from pipeline.llm.journal import keyed
from pipeline.llm.usage import DEFAULT_MAX_OUTPUT_TOKENS
from pipeline.stats.budget import Spend, not_sent
from tests.fakes.openai_fixtures import service_cfg

PRICE = 10.0  # USD per 1M tokens, in and out: a reply cut at 2,048 tokens costs $0.0205
LONG_REPLY = 4000  # words, each a token to the fakes: $0.04 a reply when nothing cuts it
# the key of PROMPT's request (params {"temperature": 0.2}) as journaled before the limit was sent
OLD_KEYS = {"openai": "93bd20b59ed04672161f1ee5f70a8c8ea2d5e14ea3d5125eb56148974f02a8df",
            "gemini": "0b22b5bd932957d4632d7621757e7a45685c5ad21e7211cb98d7ba8930f8f00a"}
PROMPT = "Tell me a long story, number {i}."


def requests(n: int) -> list[Request]:
    return [Request(key=f"k{i}", messages=[{"role": "user", "content": PROMPT.format(i=i)}])
            for i in range(n)]


def long_replies(fake) -> None:
    fake.set_responder(lambda body: " ".join(["word"] * LONG_REPLY))
    fake.set_faults(latency_s=0.05)  # replies take a while, so all 16 are in flight together


def sixteen_at_once(fake, provider: str, tmp_path, cap: float, n: int = 48):
    """``n`` requests without max_tokens, 16 in flight at a time, against ``cap``:
    (USD the fake reported, the results)."""
    long_replies(fake)
    svc = service_cfg(provider, rpm=None, concurrency=16, max_retries=3, timeout_s=5,
                      price_input_per_1m=PRICE, price_output_per_1m=PRICE)
    doc = {"task": {"name": "demo"}, "data": {"source": "x.jsonl"}, "student": {"model": "m"},
           "budget": {"max_spend_usd": cap}}
    spend = Spend(build_config(doc, base_dir=tmp_path), svc, before=0.0)
    results = Engine(svc, spend=spend, progress=False, backoff_base=0.02).run(requests(n))
    rep = fake.reported
    return (rep["prompt_tokens"] + rep["completion_tokens"]) * PRICE / 1e6, results


def five_runs(fake, provider: str, tmp_path, limit_sent) -> None:
    for cap in (0.50, 0.10):
        spent = []
        for run in range(5):
            fake.reset()
            cost, results = sixteen_at_once(fake, provider, tmp_path / f"{cap}-{run}", cap)
            sent = [r for r in results if not not_sent(r)]
            spent.append(cost)
            assert cost <= cap + 1e-12, f"{provider} run {run}: ${cost:.4f} > cap ${cap}"
            # the cap was used, not refused outright; the fake's listen queue (5) may drop one of
            # the 16 connections opened at once before it logs the request: its retry may not fit
            assert 3 <= len(fake.log) <= len(sent)
            limits = [limit_sent(e["body"]) for e in fake.log]
            assert limits == [DEFAULT_MAX_OUTPUT_TOKENS] * len(fake.log)
            assert {r.finish_reason for r in sent if r.ok} == {"length"}  # cut at the limit sent
        print(f"\n{provider}, 16 in flight, no max_tokens, cap ${cap:.2f}: spent "
              + ", ".join(f"${s:.4f}" for s in spent) + f"; max ${max(spent):.4f}")


def test_openai_cap_holds_without_max_tokens(fake_openai, tmp_path):
    # the fake is a base_url server to the provider: the limit goes as max_tokens
    five_runs(fake_openai, "openai", tmp_path, lambda body: body.get("max_tokens"))


def test_gemini_cap_holds_without_max_tokens(fake_gemini, tmp_path):
    five_runs(fake_gemini, "gemini", tmp_path,
              lambda body: (body.get("generationConfig") or {}).get("maxOutputTokens"))


@pytest.mark.parametrize("params, sent, finish", [
    ({"max_tokens": 40}, {"max_tokens": 40}, "length"),
    ({"max_completion_tokens": 40}, {"max_completion_tokens": 40}, "length"),
    ({"max_tokens": None}, {"max_tokens": DEFAULT_MAX_OUTPUT_TOKENS}, "stop"),  # null: no limit set
])
def test_a_limit_the_params_set_is_sent_as_written(fake_openai, tmp_path, params, sent, finish):
    fake_openai.set_responder(lambda body: " ".join(["word"] * 60))
    svc = service_cfg(rpm=None, price_input_per_1m=PRICE, price_output_per_1m=PRICE, params=params)
    (result,) = Engine(svc, progress=False).run(requests(1))
    (entry,) = fake_openai.log
    names = ("max_tokens", "max_completion_tokens")
    assert {k: entry["body"][k] for k in names if k in entry["body"]} == sent
    assert result.ok and result.finish_reason == finish


def test_openai_batch_requests_carry_the_limit(fake_openai, tmp_path):
    long_replies(fake_openai)
    svc = service_cfg(rpm=None, price_input_per_1m=PRICE, price_output_per_1m=PRICE)
    results = Engine(svc, batch=True, batch_poll_s=0.01, progress=False).run(requests(4))
    assert [r.finish_reason for r in results] == ["length"] * 4
    (upload,) = [f["data"] for f in fake_openai.files.values() if f["purpose"] == "batch"]
    bodies = [json.loads(line)["body"] for line in upload.decode().splitlines()]
    assert [b["max_tokens"] for b in bodies] == [DEFAULT_MAX_OUTPUT_TOKENS] * 4
    assert not any(e["path"] == "/v1/chat/completions" for e in fake_openai.log)


def test_gemini_batch_requests_carry_the_limit(fake_gemini, tmp_path):
    long_replies(fake_gemini)
    svc = service_cfg("gemini", rpm=None, price_input_per_1m=PRICE, price_output_per_1m=PRICE)
    results = Engine(svc, batch=True, batch_poll_s=0.01, progress=False).run(requests(4))
    assert [r.finish_reason for r in results] == ["length"] * 4
    (batch,) = fake_gemini.batches.values()
    limits = [item["request"]["generationConfig"]["maxOutputTokens"] for item in batch["requests"]]
    assert limits == [DEFAULT_MAX_OUTPUT_TOKENS] * 4


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_a_journal_written_before_the_limit_was_sent_is_reused(request, tmp_path, provider):
    fake = request.getfixturevalue(f"fake_{provider}")
    svc = service_cfg(provider, rpm=None, price_input_per_1m=PRICE, price_output_per_1m=PRICE,
                      params={"temperature": 0.2})
    old = requests(2)[:1]
    assert keyed(svc, old[0]) == ({"temperature": 0.2}, OLD_KEYS[provider])
    journal = tmp_path / "journal.jsonl"
    answer = "an answer paid for earlier"
    usage = {"requests": 1, "input_tokens": 7, "output_tokens": 5, "cost_usd": 0.00012}
    journal.write_text(json.dumps({"key": OLD_KEYS[provider], "request_key": "k0", "repeat": 0,
                                   "text": answer, "data": answer, "usage": usage,
                                   "finish_reason": "stop", "model": svc.model, "t": 1.0}) + "\n")
    results = Engine(svc, journal=journal, progress=False).run(requests(2))
    assert results[0].cached and results[0].data == answer
    assert not results[1].cached and results[1].ok
    assert len(fake.log) == 1  # only the new question was paid for
