import pytest

from pipeline.config import build_config
from pipeline.llm.base import Request, Result
from pipeline.manifest import Manifest
from pipeline.stats.budget import Spend, spent_in_store
from pipeline.store import open_store


def make_cfg(tmp_path, budget=1.0, **svc):
    doc = {"task": {"name": "demo"}, "data": {"source": "x.jsonl"}, "student": {"model": "m"},
           "budget": {"max_spend_usd": budget},
           "service": {"synthesize": {"provider": "openai", "model": "gpt-4o", "price_input_per_1m": 0,
                                      "price_output_per_1m": 1000, "concurrency": 1, **svc}}}
    return build_config(doc, base_dir=tmp_path)


def planned(n):
    return [(Request(key=f"k{i}", messages=[{"role": "user", "content": "hi"}]), None) for i in range(n)]


def paid(cost, cached=False):
    return Result(key="k", ok=True, cached=cached, usage={"cost_usd": 0.0 if cached else cost})


def test_first_chunk_sized_by_token_limit_then_by_dearest_answer(tmp_path):
    cfg = make_cfg(tmp_path, params={"max_tokens": 250})  # 250 tokens at $1000/M: $0.25 a request up front
    spend = Spend(cfg, cfg.service.synthesize, before=0.0)
    chunks = spend.chunks(planned(20))
    first = next(chunks)
    assert len(first) == 4
    for cost in (0.05, 0.10, 0.05, 0.05):
        spend.add(paid(cost))
    second = next(chunks)  # $0.75 left at $0.10 (the dearest so far) a request
    assert len(second) == 7
    for _ in second:
        spend.add(paid(0.1))
    assert list(chunks) == [] and spend.stopped
    assert spend.usage()["cost_usd"] == pytest.approx(0.95)


def test_cached_answers_are_free_and_do_not_lower_the_estimate(tmp_path):
    cfg = make_cfg(tmp_path, params={"max_tokens": 250})
    spend = Spend(cfg, cfg.service.synthesize, before=0.9, carried=0.5)
    assert list(spend.chunks(planned(10))) == []  # $0.10 left < $0.25 a request: nothing is sent
    assert spend.stopped
    spend2 = Spend(cfg, cfg.service.synthesize, before=0.0, carried=0.5)
    spend2.add(paid(0.3, cached=True))
    assert spend2._estimate(planned(1)[0][0]) == pytest.approx(0.25)  # still the up-front estimate
    u = spend2.usage()
    assert (u["cached"], u["new_cost_usd"], u["cost_usd"], u["carried_cost_usd"]) == (1, 0.0, 0.5, 0.5)


def test_spent_in_store_sums_every_manifest(tmp_path):
    store = open_store(make_cfg(tmp_path))
    for name, cost in (("prepare", None), ("round-1/synthesize", 0.25), ("round-1/evaluate", 0.5)):
        m = Manifest.start(name.split("/")[-1], name, "h")
        m.usage = {"cost_usd": cost} if cost is not None else {}
        with store.write(name) as folder:
            m.finish(folder).write(folder)
    assert spent_in_store(store) == pytest.approx(0.75)
    assert spent_in_store(store, exclude="round-1/evaluate") == pytest.approx(0.25)


def test_reserve_holds_the_worst_case_and_settle_releases_it(tmp_path):
    # "hi" at $0 input; 250 output tokens at $1000/M: $0.25 worst case a send; cap $1
    cfg = make_cfg(tmp_path, params={"max_tokens": 250})
    spend = Spend(cfg, cfg.service.synthesize, before=0.0)
    msgs = [{"role": "user", "content": "hi"}]
    held = [spend.reserve(msgs) for _ in range(5)]
    assert held[:4] == [pytest.approx(0.25)] * 4 and held[4] is None and spend.stopped  # 4 in flight fill the cap
    spend.settle(held[0], 0.05)  # the reply was cheaper than its worst case: room for another send
    spend.settle(held[1], 0.0)  # an HTTP error: not charged
    spend.settle(held[2], None)  # no reply (timeout): may have been charged, so the worst case stays counted
    assert (spend.settled, spend.unknown, spend.in_flight) == (pytest.approx(0.05), pytest.approx(0.25), 1)
    assert spend.left() == pytest.approx(1.0 - 0.05 - 0.25 - 0.25)
    assert spend.reserve(msgs) == pytest.approx(0.25) and spend.reserve(msgs) is None
    assert spend.usage()["unknown_at_most_usd"] == pytest.approx(0.25)


def test_areserve_waits_for_sends_in_flight_then_refuses_when_none_are_left(tmp_path):
    import asyncio

    cfg = make_cfg(tmp_path, budget=0.6, params={"max_tokens": 250})
    spend = Spend(cfg, cfg.service.synthesize, before=0.0)
    msgs = [{"role": "user", "content": "hi"}]

    async def scenario():
        a, b = await spend.areserve(msgs), await spend.areserve(msgs)  # $0.50 held of $0.60
        waiting = asyncio.ensure_future(spend.areserve(msgs, poll_s=0.005))
        await asyncio.sleep(0.03)
        assert not waiting.done()  # no room yet, but a send in flight may settle below its worst case
        spend.settle(a, 0.1)  # $0.10 spent + $0.25 held: $0.25 left, room for one more
        third = await waiting
        spend.settle(b, 0.25)
        spend.settle(third, 0.25)  # $0.60 spent, nothing in flight: refused at once
        return third, await spend.areserve(msgs)

    third, fourth = asyncio.run(scenario())
    assert third == pytest.approx(0.25) and fourth is None and spend.stopped and spend.refused == 1
