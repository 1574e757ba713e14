"""Issue 23 (part 3): a json task's answers decoded under its schema (``infer.constrain``).

The transformers backend constrains through llguidance (the tiny model, whose own answers are never JSON);
the llamacpp backend through llama-server's ``json_schema`` (the real server with SmolLM2-135M, whose own
answer to an extraction prompt adds keys the schema forbids and runs past the token limit).
"""

from __future__ import annotations

import importlib.util
import json
import urllib.request

import pytest

from pipeline.data.structured import conforms, parse_json
from pipeline.errors import DuoError
from pipeline.model import constrain
from pipeline.model.llamacpp import _ask
from pipeline.records import read_jsonl
from pipeline.stages import infer
from pipeline.store import LocalStore
from tests.model_fixtures import make_prepare, qa_rows, tiny_config

SUM = {"type": "object", "additionalProperties": False, "required": ["sum", "unit"],
       "properties": {"sum": {"type": "integer", "minimum": 0, "maximum": 40},
                      "unit": {"enum": ["apples", "pears"]}}}
PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}
needs_llguidance = pytest.mark.skipif(importlib.util.find_spec("llguidance") is None,
                                      reason="no llguidance: pip install llguidance (the structured extra)")


def json_rows(n: int, prefix: str) -> list[dict]:
    rows = qa_rows(n, seed=1, prefix=prefix)
    for r in rows:
        r["response"] = r["messages"][-1]["content"] = json.dumps({"sum": 3, "unit": "apples"})
    return rows


def run_infer(tmp_path, model_dir, constrain_to):
    tmp_path.mkdir()
    (tmp_path / "sum.schema.json").write_text(json.dumps(SUM))
    cfg = tiny_config(tmp_path, model_dir, task={"kind": "json", "schema": "sum.schema.json"},
                      infer={"batch_size": 3, "max_new_tokens": 32, "constrain": constrain_to})
    store = LocalStore(tmp_path / "store")
    make_prepare(store, json_rows(4, "t"), json_rows(5, "e"))
    manifest = infer.run(cfg, store, 0)
    return manifest, read_jsonl(store.open("round-0/infer") / "answers.jsonl")


@needs_llguidance
def test_transformers_answers_follow_the_schema_only_when_constrained(tmp_path, tiny_model_dir):
    m, answers = run_infer(tmp_path / "free", tiny_model_dir, False)
    assert m.extra["constrained"] == {"constrained": False, "why": "infer.constrain is false"}
    assert not any(parse_json(a["answer"])[1] is None for a in answers)  # the untrained model writes no JSON
    m, answers = run_infer(tmp_path / "held", tiny_model_dir, True)
    assert m.extra["constrained"]["constrained"] is True
    assert len(answers) == 5 and all(a["params"]["constrained"] == "json_schema" for a in answers)
    for a in answers:
        value, why = parse_json(a["answer"])
        assert why is None and conforms(value, SUM), a["answer"]
        assert a["finish_reason"] == "stop"  # the end token is forced once the object closes


def test_plan_constrains_only_a_json_task_where_the_backend_can(tmp_path, tiny_model_dir):
    logged = {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}
    rows = [{"id": "a", "response_format": logged}, {"id": "b"}]

    def cfg(value):
        return tiny_config(tmp_path, tiny_model_dir, infer={"constrain": value})

    schemas, note = constrain.plan(cfg("auto"), "json", rows, "llamacpp")
    assert schemas == [PERSON, PERSON] and note["constrained"]  # the logged schema is the task's
    assert constrain.plan(cfg("auto"), "text", rows, "llamacpp")[0] is None
    schemas, note = constrain.plan(cfg("auto"), "json", rows, "vllm")
    assert schemas is None and "vllm" in note["why"]
    assert constrain.plan(cfg(False), "json", rows, "llamacpp") == (None, {"constrained": False,
                                                                         "why": "infer.constrain is false"})
    with pytest.raises(DuoError, match="infer.constrain is true but the task's kind is label"):
        constrain.plan(cfg(True), "label", rows, "llamacpp")


def tokenize(server, text: str) -> list[int]:
    """``text``'s token ids by the server's own tokenizer (special tokens parsed)."""
    req = urllib.request.Request(server.url + "/tokenize", data=json.dumps({"content": text}).encode(),
                                 headers={"Authorization": f"Bearer {server.api_key}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as reply:
        return json.loads(reply.read())["tokens"]


@pytest.mark.real_server
def test_llama_server_json_schema_turns_an_invalid_answer_valid(real_server, tmp_path, tiny_model_dir):
    from openai import OpenAI

    cfg = tiny_config(tmp_path, tiny_model_dir, infer={"max_new_tokens": 48, "do_sample": False})
    client = OpenAI(base_url=real_server.base_url, api_key=real_server.api_key, max_retries=0)
    text = ("<|im_start|>user\nExtract the person as JSON: Alice is 31 years old.<|im_end|>\n"
            "<|im_start|>assistant\n")
    prompt = tokenize(real_server, text)  # token ids, as generate_llamacpp sends them
    free, _ = _ask(client, cfg, prompt, 0)
    value, why = parse_json(free.text)
    assert why is not None or not conforms(value, PERSON), free.text  # extra keys, or cut at 48 tokens
    held, tokens = _ask(client, cfg, prompt, 0, PERSON)
    value, why = parse_json(held.text)
    assert why is None and conforms(value, PERSON) and value["name"] == "Alice", held.text
    assert held.finish_reason == "stop" and 0 < tokens < 48
