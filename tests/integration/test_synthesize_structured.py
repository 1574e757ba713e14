"""Issue 23 (part 4): synthesis of structured pairs against the fake OpenAI server. For a json, label and
tool_call task (the test logs of tests/data) the service is asked for pairs of the task's kind, answers each
request with valid and invalid pairs in a fixed mix, and the invalid ones are dropped and counted by reason;
kept rows carry their seed's ``tools`` and ``response_format``."""

from __future__ import annotations

import itertools
import json
import random
import threading
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config
from pipeline.data.structured import conforms, logged_schema, parse_json, parse_tool_calls
from pipeline.records import read_jsonl
from pipeline.report.training import synthesis_round
from pipeline.stages import prepare, synthesize
from pipeline.store import open_store

DATA = Path(__file__).resolve().parent.parent / "data"
CHAT = "/v1/chat/completions"
WORDS = ["river", "kettle", "violin", "orbit", "lantern", "meadow", "copper", "harbor", "puzzle", "glacier",
         "saddle", "quartz", "pepper", "falcon", "tundra", "ribbon", "velvet", "canyon", "anchor", "bamboo",
         "cobalt", "ember", "fjord", "granite", "hazel", "ivory", "kiln", "lagoon", "marble", "nectar"]
PAIRS = 4  # pairs asked for in each request


class StructuredService:
    """Answers each synthesis request with ``PAIRS`` pairs, each with a new instruction; ``answers(kind)`` says
    which responses, valid and invalid, in the same order every time."""

    def __init__(self, answers):
        self.answers, self.count, self.lock = answers, itertools.count(), threading.Lock()
        self.bodies: list[dict] = []

    def __call__(self, body: dict):
        with self.lock:
            n = next(self.count)
            self.bodies.append(body)
        rng = random.Random(n)
        return {"contents": [{"instruction": f"Please handle: {' '.join(rng.sample(WORDS, 8))}.", "response": r}
                             for r in self.answers(n)]}


def contact(n: int, **changes) -> dict:
    card = {"name": f"Rui Costa{n}", "email": f"rui.costa{n}@example.com", "age": 30 + n % 40,
            "address": {"city": "Porto", "zip": "4000"}, "tags": ["invoice"]}
    card.update(changes)
    return {k: v for k, v in card.items() if v is not None}


def json_answers(n: int) -> list:
    # valid object, valid JSON text, a required key missing, not JSON at all
    return [contact(n), json.dumps(contact(n + 1000)), contact(n, email=None), "{\"name\": \"Rui\", age: 3"]


def label_answers(n: int) -> list:
    return ["positive", "  NEGATIVE.", "maybe", "neutral"]  # the casing is normalised; "maybe" is no label


def tool_answers(n: int) -> list:
    return [[{"name": "get_weather", "arguments": {"city": f"Faro{n}", "unit": "celsius"}}],
            [{"name": "send_email", "arguments": {"to": "a@example.com"}}],  # no such tool
            [{"name": "get_weather", "arguments": {"city": "Faro"}}],  # "unit" is required
            [{"name": "convert_currency", "arguments": {"amount": "ten", "from": "EUR", "to": "USD"}}]]


def run_round(tmp_path: Path, fake_openai, log: str, answers, samples: int = 10):
    doc = {
        "task": {"name": "structured", "description": "answers a program reads"},
        "data": {"source": str(DATA / log), "test": {"size": 0.25, "seed": 3}},
        "student": {"model": "m"},
        "service": {"synthesize": {"provider": "openai", "model": "gpt-4o", "rpm": None, "concurrency": 4,
                                   "price_input_per_1m": 5.0, "price_output_per_1m": 15.0, "max_retries": 1,
                                   "schema_retries": 1, "timeout_s": 10}},
        "synthesize": {"samples": samples, "pairs_per_request": PAIRS, "max_attempts": 6, "seed": 1,
                       "decontaminate": {"semantic": False}},
    }
    path = tmp_path / "duo.yaml"
    path.write_text(yaml.safe_dump(doc))
    cfg = load_config(path)
    store = open_store(cfg)
    prepare.run(cfg, store)
    service = StructuredService(answers)
    fake_openai.set_responder(service)
    m = synthesize.run(cfg, store, 1)
    folder = store.open("round-1/synthesize")
    train = {r["id"]: r for r in read_jsonl(store.open("prepare") / "train.jsonl")}
    return m, read_jsonl(folder / "data.jsonl"), read_jsonl(folder / "removed.jsonl"), train, service


def reply_schema(body: dict) -> dict:
    return body["response_format"]["json_schema"]["schema"]


def test_json_pairs_valid_against_the_schema_are_kept_the_others_counted(tmp_path, fake_openai):
    m, kept, removed, train, service = run_round(tmp_path, fake_openai, "extraction_logs.jsonl", json_answers)
    c, requests = m.counts, m.counts["requests"]
    assert m.extra["kind"] == "json" and c["kept"] == 10
    assert c["removed"]["schema_mismatch"] == c["removed"]["invalid_json"] == requests  # one of each a reply
    assert c["kept"] + c["surplus"] == 2 * requests and c["received"] == PAIRS * requests
    shown = synthesis_round(open_store(load_config(tmp_path / "duo.yaml")), 1)  # the report's data section
    assert shown["kind"] == "json" and shown["invalid"] == {"invalid_json": requests, "schema_mismatch": requests}
    assert {"schema_mismatch", "invalid_json"} <= {r["reason"] for r in removed} <= {
        "schema_mismatch", "invalid_json", "surplus"}
    assert "email" in next(r for r in removed if r["reason"] == "schema_mismatch")["error"]
    for row in kept:
        seed = train[row["seed_id"]]
        value, why = parse_json(row["response"])
        assert why is None and conforms(value, logged_schema(seed)), row["response"]
        assert row["response_format"] == seed["response_format"] and "tools" not in row
        assert row["messages"][-1] == {"role": "assistant", "content": row["response"]}
    body = service.bodies[0]
    prompt = body["messages"][-1]["content"]
    assert '"email"' in prompt and "Every answer is a JSON value valid against this JSON Schema" in prompt
    item = reply_schema(body)["properties"]["contents"]["items"]["properties"]["response"]
    assert item["type"] == ["object", "array", "string"]  # the kind's own reply schema


def test_label_pairs_keep_only_labels_of_the_set(tmp_path, fake_openai):
    m, kept, removed, _, service = run_round(tmp_path, fake_openai, "classification_logs.jsonl", label_answers)
    c = m.counts
    assert m.extra["kind"] == "label" and c["kept"] == 10
    assert c["removed"]["unknown_label"] == c["requests"] and c["removed"]["truncated"] == 0  # labels are short
    assert {r["response"] for r in kept} == {"positive", "negative", "neutral"}
    assert {r["response"] for r in removed if r["reason"] == "unknown_label"} == {"maybe"}
    prompt = service.bodies[0]["messages"][-1]["content"]
    assert "exactly one of these labels, spelled as here: positive, negative, neutral" in prompt


def test_tool_call_pairs_call_the_logged_tools_with_valid_arguments(tmp_path, fake_openai):
    m, kept, removed, train, service = run_round(tmp_path, fake_openai, "tool_logs.jsonl", tool_answers, 6)
    c, requests = m.counts, m.counts["requests"]
    assert m.extra["kind"] == "tool_call" and c["kept"] == 6
    assert c["removed"]["unknown_tool"] == requests and c["removed"]["invalid_arguments"] == 2 * requests
    errors = sorted(r["error"] for r in removed if r["reason"] == "invalid_arguments")
    assert any("'unit' is a required property" in e for e in errors)
    assert any("convert_currency: amount: 'ten' is not of type 'number'" in e for e in errors)
    for row in kept:
        calls, why = parse_tool_calls(row["response"])
        assert why is None and calls[0]["name"] == "get_weather"
        assert row["tools"] == train[row["seed_id"]]["tools"]  # the seed's tools travel with the row
    prompt = service.bodies[0]["messages"][-1]["content"]
    assert '"convert_currency"' in prompt and "<tools>" in prompt


@pytest.mark.parametrize("kind", ["label"])
def test_a_text_task_is_asked_as_before(tmp_path, kind):
    from pipeline.data.structured_pairs import PairRules

    rules = PairRules("text")
    assert rules.target({"a": 1}, {}) == ({"a": 1}, None, {}) and rules.prompt_vars({}) == {}
    assert PairRules(kind, labels=["yes", "no"]).target("Yes!", {}) == ("yes", None, {})
