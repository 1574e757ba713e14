"""Issue #24: a request refused at random with a 429 that does not say the account is at its limit gives its grant
back while the server does not count refusals (the fake's default), so the window's room goes to answers; against
a server that counts them (``count_refused``, as OpenAI documents), the first account-limit 429 makes the engine
count them too."""

from __future__ import annotations

from pipeline.llm import Engine, Request
from tests.fakes.openai_fixtures import service_cfg

PERIOD = 3.0
RPM = 15  # a send every 0.2 s


def asked(fake, count_refused: bool, **config) -> Engine:
    fake.set_faults(rate_429=0.2, retry_after=0.05, seed=7)
    fake.set_rate_limit(rpm=RPM, period=PERIOD, count_refused=count_refused)
    engine = Engine(service_cfg(rpm=RPM, max_retries=8, timeout_s=5, **config), period=PERIOD, progress=False)
    reqs = [Request(key=f"k{i}", messages=[{"role": "user", "content": f"question {i}"}]) for i in range(24)]
    assert all(r.ok for r in engine.run(reqs))
    return engine


def test_random_429s_give_their_grant_back_and_the_limit_still_holds(fake_openai):
    engine = asked(fake_openai, count_refused=False)
    assert fake_openai.fault_counts["429"] >= 3 and fake_openai.fault_counts["over_limit"] == 0
    assert engine.limiter.refunds  # no 429 ever said the account was at its limit
    log = sorted(fake_openai.log, key=lambda e: e["t"])
    answered = [e["t"] for e in log if e["status"] == 200]
    arrived = [e["t"] for e in log]
    # more arrived in some window than the limit allows: the refused ones were not counted, and used no room
    assert max(sum(1 for u in arrived if t <= u < t + PERIOD) for t in arrived) > RPM
    assert max(sum(1 for u in answered if t <= u < t + PERIOD) for t in answered) <= RPM


def test_a_server_that_counts_refusals_is_learnt_from_its_first_limit_429(fake_openai):
    engine = asked(fake_openai, count_refused=True)
    assert fake_openai.fault_counts["over_limit"] >= 1 and not engine.limiter.refunds


def test_a_config_that_says_refusals_count_never_goes_over_such_a_server(fake_openai):
    engine = asked(fake_openai, count_refused=True, refusals_count=True)
    assert fake_openai.fault_counts["429"] >= 3 and fake_openai.fault_counts["over_limit"] == 0
    assert not engine.limiter.refunds
