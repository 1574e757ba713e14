"""The spend guard's arithmetic and its plan text, on hand-computed cases (issue 18, item 5: changes that
``bench/mutants.py`` made to ``pipeline/stats/budget.py`` and no test noticed)."""

from __future__ import annotations

import pytest

from pipeline.config import build_config
from pipeline.llm.base import Request, Result
from pipeline.manifest import Manifest
from pipeline.prices import price_text
from pipeline.stats.budget import PlanPart, Spend, not_sent, plan_text, spent_in_store
from pipeline.store import open_store

HI = [{"role": "user", "content": "hi"}]  # ceil(2 / 3) + 4 = 5 input tokens at most


def make_cfg(tmp_path, budget=1.0, price_in=0.0, price_out=1000.0, **svc):
    doc = {"task": {"name": "demo"}, "data": {"source": "x.jsonl"}, "student": {"model": "m"},
           "budget": {"max_spend_usd": budget},
           "service": {"synthesize": {"provider": "openai", "model": "gpt-4o", "price_input_per_1m": price_in,
                                      "price_output_per_1m": price_out, "concurrency": 1, **svc}}}
    return build_config(doc, base_dir=tmp_path)


def planned(n):
    return [(Request(key=f"k{i}", messages=HI), None) for i in range(n)]


def test_spent_up_to_a_round_counts_that_round_and_the_artifacts_of_no_round(tmp_path):
    store = open_store(make_cfg(tmp_path))
    costs = {"prepare": 0.001, "round-0/evaluate": 0.01, "round-1/synthesize": 0.1, "round-2/synthesize": 1.0}
    for name, cost in costs.items():
        m = Manifest.start(name.split("/")[-1], name, "h")
        m.usage = {"cost_usd": cost}
        with store.write(name) as folder:
            m.finish(folder).write(folder)
    assert spent_in_store(store, up_to_round=1) == pytest.approx(0.111)
    assert spent_in_store(store, up_to_round=0) == pytest.approx(0.011)
    assert spent_in_store(store) == pytest.approx(1.111)
    assert spent_in_store(store, exclude="round-1/synthesize", up_to_round=2) == pytest.approx(1.011)


def test_not_sent_is_only_a_budget_refusal_that_made_no_attempt():
    assert not_sent(Result(key="k", ok=False, error="budget"))
    assert not not_sent(Result(key="k", ok=False, error="budget", attempts=1))  # sent, then stopped: maybe charged
    assert not not_sent(Result(key="k", ok=False, error="timeout"))
    assert not not_sent(Result(key="k", ok=True, error="budget"))


def test_default_chunk_is_four_sends_per_slot_and_never_under_eight(tmp_path):
    one = make_cfg(tmp_path)  # concurrency 1
    assert Spend(one, one.service.synthesize, before=0.0).chunk_size == 8
    cfg = make_cfg(tmp_path, concurrency=5)
    assert Spend(cfg, cfg.service.synthesize, before=0.0).chunk_size == 20
    assert Spend(cfg, cfg.service.synthesize, before=0.0, chunk_size=3).chunk_size == 3


def test_chunks_yield_every_request_once_in_order_when_the_budget_allows(tmp_path):
    cfg = make_cfg(tmp_path, budget=100.0, params={"max_tokens": 250})
    spend = Spend(cfg, cfg.service.synthesize, before=0.0, chunk_size=3)
    requests = planned(7)
    chunks = list(spend.chunks(requests))
    assert [len(c) for c in chunks] == [3, 3, 1] and [r for c in chunks for r in c] == requests
    assert not spend.stopped
    assert list(spend.chunks(requests[:1])) == [requests[:1]]


def test_free_sends_are_never_refused_even_past_the_cap(tmp_path):
    cfg = make_cfg(tmp_path, budget=1.0, price_out=0.0)
    spend = Spend(cfg, cfg.service.synthesize, before=2.0)  # already past the cap
    requests = planned(5)
    assert [r for c in spend.chunks(requests) for r in c] == requests
    assert spend.reserve(HI) == 0.0 and not spend.stopped and spend.refused == 0


def test_add_counts_tokens_and_prices_a_reply_without_a_cost(tmp_path):
    cfg = make_cfg(tmp_path, price_in=1000.0, price_out=2000.0)
    spend = Spend(cfg, cfg.service.synthesize, before=0.0, carried=1 / 3)
    spend.add(Result(key="a", ok=True, usage={"input_tokens": 10, "output_tokens": 20}))  # $0.01 + $0.04
    spend.add(Result(key="b", ok=False, usage={}))  # nothing known: free, no tokens
    spend.add(Result(key="c", ok=True, cached=True, usage={"input_tokens": 0, "output_tokens": 0, "cost_usd": 0}))
    spend.add(Result(key="d", ok=True, usage={"input_tokens": 1, "output_tokens": 1, "cost_usd": 1 / 3}))
    assert spend.usage() == {"requests": 4, "input_tokens": 11, "output_tokens": 21, "cached": 1,
                             "cost_usd": round(0.05 + 2 / 3, 8), "new_cost_usd": 0.38333333,
                             "carried_cost_usd": 0.33333333}  # 8 places
    assert spend.max_cost == pytest.approx(1 / 3)


def test_a_send_with_no_reply_is_counted_at_its_worst_case(tmp_path):
    cfg = make_cfg(tmp_path, params={"max_tokens": 1000})  # $1.00 a send at worst
    spend = Spend(cfg, cfg.service.synthesize, before=0.0)
    held = spend.reserve(HI, discount=1 / 3)
    spend.settle(held, None)
    assert spend.usage()["unknown_at_most_usd"] == 0.33333333
    assert spend.left() == pytest.approx(2 / 3)


def part_and_svc(tmp_path):
    cfg = make_cfg(tmp_path, price_in=1000.0, price_out=2000.0, params={"max_tokens": 100})
    svc = cfg.service.synthesize
    requests = [Request(key="k0", messages=[{"role": "user", "content": "hi\nthere"}]),  # 8 chars: 3 + 4 tokens
                Request(key="k1", messages=HI),  # already answered: not counted
                Request(key="k2", messages=[{"role": "user", "content": "abcdefg"}], params={"max_tokens": 40})]
    return cfg, svc, PlanPart.of("synthesize", svc, requests, [False, True, False])


def test_plan_part_counts_the_worst_case_of_the_requests_still_to_send(tmp_path):
    _, svc, part = part_and_svc(tmp_path)
    assert (part.requests, part.answered, part.input_tokens, part.output_tokens) == (3, 1, 14, 140)
    assert part.cost_usd == pytest.approx((14 * 1000 + 140 * 2000) / 1e6)  # $0.294
    assert part.first.key == "k0"
    assert part.lines() == [
        "synthesize: 3 requests to openai:gpt-4o, 1 already answered in the journal (free), 2 to send",
        "  tokens, at most: input 14, output 140 (prompt at 3 characters a token; each reply at max_tokens 100)",
        f"  cost, at most: $0.2940 at {price_text(svc)}",
        "  first request (k0):",
        "    [user] hi\n      there"]
    empty = PlanPart.of("judge", make_cfg(tmp_path).service.synthesize, [], [])
    assert empty.first is None and len(empty.lines()) == 3
    assert "each reply at no max_tokens set: 2048, the limit sent" in empty.lines()[1]


def test_plan_text_totals_against_what_is_left_of_the_budget(tmp_path):
    cfg, _, part = part_and_svc(tmp_path)
    text = plan_text("synthesize round 1", [part], cfg, spent=0.8, notes=("a note",))
    lines = text.split("\n")
    assert lines[:2] == ["synthesize round 1 (plan: nothing is sent, nothing is written)", "a note"]
    assert text.startswith("\n".join(lines[:2] + part.lines()))
    assert lines[-1] == ("total: 2 requests to send, at most $0.2940; spent so far $0.8000 of "
                         "budget.max_spend_usd=$1.00 ($0.2000 left); the cap would stop it short")
    over = plan_text("t", [part], cfg, spent=1.5).split("\n")[-1]
    assert "spent so far $1.5000 of budget.max_spend_usd=$1.00 ($0.0000 left); the cap" in over
    # nothing to send with nothing left: the cap stops nothing
    assert plan_text("t", [], cfg, spent=1.0).split("\n")[-1] == (
        "total: 0 requests to send, at most $0.0000; spent so far $1.0000 of budget.max_spend_usd=$1.00 "
        "($0.0000 left)")
