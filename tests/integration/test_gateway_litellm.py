"""``duo rollout``'s LiteLLM config in the real proxy (``.venv-gateway``), its capture hook writing the
traffic: the fake OpenAI server is the service, a llama-server of SmolLM2 the student, traffic sent with the
openai SDK.

One proxy for the module (it takes ~10-30 s to start): 200 requests at a 25% canary with 20% of the service's
answers mirrored; the split and the shadow pairs are counted from the capture and from both servers' own logs.
Last, the student's server is killed mid-traffic: every client request still gets an answer (the fallback),
and the capture shows the student's errors and the service's fallback answers.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
from openai import OpenAI

from pipeline.cli import main
from tests.gateway_fixtures import MASTER_KEY, Stack, binomial_bounds, kill_student_midway, start_litellm

pytestmark = [pytest.mark.slow, pytest.mark.real_server]

WEIGHT, SHADOW, N = 0.25, 0.2, 200
ASK = {"max_tokens": 4, "temperature": 0}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    base = tmp_path_factory.mktemp("litellm")
    stack = Stack(base, shadow=SHADOW, timeout_s=10, steps=[0.05, 0.25, 1.0], canary=0.05)
    assert main(["rollout", str(stack.config), "--canary", str(WEIGHT), "--gateway", "litellm"]) == 0
    proxy = start_litellm(stack, base / "deploy" / "litellm.yaml")
    client = OpenAI(base_url=proxy.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=60)
    yield stack, proxy, client
    proxy.stop()
    stack.stop()


def ask(client, text: str, model: str = "demo") -> str:
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **ASK)
    return reply.choices[0].message.content


def settled(stack: Stack, tag: str, served: int, timeout: float = 60.0) -> list[dict]:
    """The capture's rows of prompts tagged ``tag`` once all ``served`` answers are written and the student's
    log agrees with the capture (logging callbacks and mirrored calls finish after their client's answer)."""
    deadline = time.monotonic() + timeout
    while True:
        traffic = stack.traffic()
        rows = [r for r in traffic if tag in r["request"]["messages"][-1]["content"]]
        student_rows = sum(1 for r in traffic if r["duo"]["deployment"] == "student")
        done = sum(1 for r in rows if r["duo"]["role"] == "served") >= served
        if (done and student_rows == stack.student_requests()) or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


@pytest.fixture(scope="module")
def canary_traffic(gateway):
    stack, _, client = gateway
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda i: ask(client, f"split {i}: say one word"), range(N)))
    assert all(isinstance(a, str) for a in answers)
    return settled(stack, "split ", N)


def test_canary_split_within_binomial_bounds(gateway, canary_traffic):
    stack, proxy, _ = gateway
    served = [r for r in canary_traffic if r["duo"]["role"] == "served"]
    assert len(served) == N and not any(r["duo"]["error"] for r in canary_traffic)
    by = Counter(r["duo"]["deployment"] for r in served)
    low, high = binomial_bounds(N, WEIGHT)
    print(f"\nlitellm split: student {by['student']}/{N} (bounds {low}-{high}), service {by['service']}; "
          f"proxy started in {proxy.start_s:.1f} s")
    assert low <= by["student"] <= high
    # the servers' own counts agree: the service answered what it served, the student its share + the shadows
    shadows = sum(1 for r in canary_traffic if r["duo"]["role"] == "shadow")
    assert stack.service_requests() == by["service"]
    assert stack.student_requests() == by["student"] + shadows
    row = served[0]
    assert row["request"]["model"] == "demo" and row["request"]["max_tokens"] == 4
    assert row["response"]["choices"][0]["message"]["content"]
    assert row["duo"]["gateway"] == "litellm" and row["duo"]["usage"]["completion_tokens"] >= 1
    assert {r["duo"]["model"] for r in served} == {"gpt-4o", stack.student.model}


def test_every_mirrored_prompt_has_both_answers_in_one_group(canary_traffic):
    groups = defaultdict(list)
    for r in canary_traffic:
        groups[r["duo"]["group"]].append(r)
    shadow_groups = [g for g in groups.values() if any(r["duo"]["role"] == "shadow" for r in g)]
    low, high = binomial_bounds(N, (1 - WEIGHT) * SHADOW)
    print(f"\nlitellm shadow pairs: {len(shadow_groups)} (bounds {low}-{high})")
    assert low <= len(shadow_groups) <= high
    for g in shadow_groups:
        roles = sorted((r["duo"]["role"], r["duo"]["deployment"]) for r in g)
        assert roles == [("served", "service"), ("shadow", "student")]
        assert g[0]["request"]["messages"] == g[1]["request"]["messages"]
        assert all(r["response"]["choices"][0]["message"]["content"] for r in g)
    assert len(groups) == N  # one group a client request, shadow or not


def test_proxy_overhead(gateway):
    """What the proxy adds to a request: the client's time less the upstream call's time in the capture (the
    service alone, through its fallback model name)."""
    stack, _, client = gateway
    took = {}
    for i in range(20):
        t0 = time.perf_counter()
        ask(client, f"overhead {i}", model="demo-service")
        took[f"overhead {i}"] = time.perf_counter() - t0
    time.sleep(0.5)
    rows = {r["request"]["messages"][-1]["content"]: r["duo"] for r in stack.traffic()
            if r["request"]["messages"][-1]["content"] in took}
    assert len(rows) == 20
    assert all(d["deployment"] == "service" and d["role"] == "served" for d in rows.values())
    added = sorted(took[k] - d["latency_s"] for k, d in rows.items())
    upstream = statistics.median(d["latency_s"] for d in rows.values())
    print(f"\nlitellm overhead: median {1000 * statistics.median(added):.1f} ms, "
          f"max {1000 * added[-1]:.1f} ms a request (upstream median {1000 * upstream:.1f} ms)")
    assert 0 < statistics.median(added) < 1.0


def test_student_killed_mid_traffic_falls_back(gateway):
    stack, _, client = gateway
    answers = kill_student_midway(stack, lambda i: ask(client, f"kill {i}: say one word"), 60, after=12)
    assert len(answers) == 60
    deadline = time.monotonic() + 30
    while True:  # the answers' lines are written after the answers
        rows = [r for r in stack.traffic() if "kill " in r["request"]["messages"][-1]["content"]]
        ok = sum(1 for r in rows if r["duo"]["role"] == "served" and not r["duo"]["error"])
        if ok >= 60 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    served = [r for r in rows if r["duo"]["role"] == "served"]
    errors = [r for r in served if r["duo"]["deployment"] == "student" and r["duo"]["error"]]
    fallbacks = [r for r in served if r["duo"]["fallback"]]
    shadow_errors = [r for r in rows if r["duo"]["role"] == "shadow" and r["duo"]["error"]]
    print(f"\nlitellm kill: 60 requests, 0 failed; student errors {len(errors)}, fallbacks {len(fallbacks)}, "
          f"shadow errors {len(shadow_errors)}")
    assert errors, "the killed student was never picked"
    assert len(fallbacks) == len(errors)
    error_groups = {r["duo"]["group"] for r in errors}
    assert {r["duo"]["group"] for r in fallbacks} == error_groups
    assert all(r["deployment"] == "service" and r["response"] and not r["error"]
               for r in (f["duo"] | {"response": f["response"]} for f in fallbacks))
    # every client request has exactly one answer that was served without error
    answered = Counter(r["duo"]["group"] for r in served if not r["duo"]["error"])
    assert len(answered) == 60 and set(answered.values()) == {1}
