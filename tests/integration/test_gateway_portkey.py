"""``duo rollout``'s Portkey config in Portkey's real open-source gateway (node, ``.gateway/portkey``): the
fake OpenAI server is the service, a llama-server of SmolLM2 the student, traffic sent with the openai SDK and
the config in the ``x-portkey-config`` header (its ``${VAR}`` keys filled from the environment, as
``envsubst`` does). Portkey has no Python hook: the split is counted from both servers' own logs, the
fallbacks from the gateway's ``x-portkey-last-used-option-index`` header (which target answered).
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from openai import OpenAI

from pipeline.cli import main
from tests.gateway_fixtures import Stack, binomial_bounds, kill_student_midway, start_portkey

pytestmark = [pytest.mark.slow, pytest.mark.real_server]

WEIGHT, N = 0.25, 100
ASK = {"max_tokens": 4, "temperature": 0}
STUDENT, FALLBACK = "config.targets[0].targets[0]", "config.targets[0].targets[1]"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    base = tmp_path_factory.mktemp("portkey")
    stack = Stack(base, timeout_s=10)
    assert main(["rollout", str(stack.config), "--canary", str(WEIGHT), "--gateway", "portkey"]) == 0
    text = (base / "deploy" / "portkey.json").read_text()
    assert "${" in text and stack.service.api_key not in text  # keys are left to the environment
    header = json.dumps(json.loads(text))
    for name, value in stack.env.items():  # what envsubst does
        header = header.replace("${" + name + "}", value)
    proxy = start_portkey(stack)
    client = OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0, timeout=60,
                    default_headers={"x-portkey-config": header})
    yield stack, proxy, client
    proxy.stop()
    stack.stop()


def ask(client, text: str) -> str:
    """Which target answered (the gateway's header), after checking the answer has text."""
    raw = client.chat.completions.with_raw_response.create(
        model="demo", messages=[{"role": "user", "content": text}], **ASK)
    assert raw.parse().choices[0].message.content
    return raw.headers.get("x-portkey-last-used-option-index")


def test_canary_split_within_binomial_bounds(gateway):
    stack, proxy, client = gateway
    with ThreadPoolExecutor(6) as pool:
        used = Counter(pool.map(lambda i: ask(client, f"split {i}: say one word"), range(N)))
    student, service = stack.student_requests(), stack.service_requests()
    low, high = binomial_bounds(N, WEIGHT)
    print(f"\nportkey split: student {student}/{N} (bounds {low}-{high}), service {service}; "
          f"targets {dict(used)}; "
          f"gateway started in {proxy.start_s:.1f} s")
    assert student + service == N
    assert low <= student <= high
    assert used[STUDENT] == student and used[FALLBACK] == 0


def test_student_killed_falls_back_to_the_service(gateway):
    stack, _, client = gateway
    before_student, before_service = stack.student_requests(), stack.service_requests()
    used = Counter(kill_student_midway(stack, lambda i: ask(client, f"kill {i}: say one word"), 40, after=8))
    student = stack.student_requests() - before_student
    service = stack.service_requests() - before_service
    print(f"\nportkey kill: 40 requests, 0 failed; targets {dict(used)}; fallbacks {used[FALLBACK]}")
    assert sum(used.values()) == 40
    assert used[FALLBACK] >= 1, "the killed student was never picked"
    # each answer came from one server: the student before it died, the service otherwise
    assert used[STUDENT] <= student and service == 40 - used[STUDENT]
