"""Issue 23: the structured metrics against hand-computed answers (key order, nested fields, missing keys, wrong
types, extra arguments, label casing), the parsing helpers, kind detection and validate's rule check."""

from __future__ import annotations

import json

import pytest

from pipeline.config import build_config
from pipeline.data.chat_logs import chat_record
from pipeline.data.structured import (
    conforms,
    detect_kind,
    normalize_label,
    parse_json,
    parse_tool_calls,
    schema_problem,
    task_schema,
    tool_calls_text,
)
from pipeline.errors import DuoError
from pipeline.stats.structured_metrics import (
    field_match,
    json_scores,
    label_scores,
    label_summary,
    structured_scores,
    tool_scores,
)
from pipeline.stats.task_kind import kind_problems, resolve_kind, rule_for

REF = {"name": "Ana Silva", "age": 31, "address": {"city": "Lisbon", "zip": "1100"}, "tags": ["a", "b"]}
SCHEMA = {"type": "object", "required": ["name", "age"], "properties": {"age": {"type": "integer"}},
          "additionalProperties": True}


def config(**task):
    return build_config({"task": {"name": "t", **task}, "data": {"source": "x.jsonl"}, "student": {"model": "m"}})


def test_field_match_ignores_key_order_and_counts_nested_missing_extra_and_wrong_types():
    reordered = {"tags": ["b", "a"], "address": {"zip": "1100", "city": "lisbon "}, "age": 31.0, "name": "ana  SILVA"}
    assert field_match(reordered, REF) == 1.0  # 5 leaves: name, age, address.city, address.zip, tags
    assert field_match({**REF, "address": {"city": "Porto", "zip": "1100"}}, REF) == 4 / 5  # one nested leaf wrong
    missing = {k: v for k, v in REF.items() if k != "age"}
    assert field_match(missing, REF) == 4 / 5
    assert field_match({**REF, "note": "hi"}, REF) == 5 / 6  # an extra key costs too
    assert field_match({**REF, "age": "31"}, REF) == 4 / 5  # a string is not the number
    assert field_match({**REF, "tags": ["a"]}, REF) == 4 / 5  # arrays compare as sets
    assert field_match({**REF, "address": "Lisbon 1100"}, REF) == 3 / 6  # an object flattened: 2 leaves lost, 1 extra
    assert field_match({**REF, "age": True}, {**REF, "age": 1}) == 4 / 5  # a bool is not a number
    assert field_match({}, {}) == 1.0


def test_json_scores_valid_schema_and_fields():
    text = json.dumps(REF)
    assert json_scores(text, text, SCHEMA) == {"json_valid": 1.0, "schema_valid": 1.0, "field_match": 1.0}
    assert json_scores(json.dumps({**REF, "age": "31"}), text, SCHEMA) == {
        "json_valid": 1.0, "schema_valid": 0.0, "field_match": 0.8}
    assert json_scores("```json\n" + text + "\n```", text, SCHEMA) == {
        "json_valid": 0.0, "schema_valid": 0.0, "field_match": 0.0}  # fenced: not JSON to a program
    assert json_scores(text, "not json", None)["field_match"] is None  # nothing to compare with
    assert json_scores("[]", text, None)["schema_valid"] == 1.0  # no schema: valid JSON conforms
    rows = [{"answer": text, "reference": text,
             "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "array"}}}}]
    assert structured_scores("json", rows)["schema_valid"] == [0.0]  # the row's own logged schema
    assert structured_scores("json", rows, schema=SCHEMA)["schema_valid"] == [1.0]  # task.schema wins


def test_label_scores_and_summary_by_hand():
    labels = ["positive", "negative", "neutral"]
    assert label_scores(" Positive. ", "positive", labels) == {"exact_match": 1.0}
    assert label_scores("POSITIVE", "negative", labels) == {"exact_match": 0.0}
    assert label_scores("'neutral'", "Neutral", None) == {"exact_match": 1.0}
    answers = ["positive", "Positive", "negative", "neutral", "maybe", "negative"]
    refs = ["positive", "positive", "positive", "neutral", "neutral", "negative"]
    s = label_summary(answers, refs, labels)
    assert s["confusion"] == {"rows": labels, "columns": labels + ["(other)"],
                              "counts": [[2, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1]]}
    assert s["accuracy"] == pytest.approx(4 / 6)
    # positive: P 2/2, R 2/3, F1 0.8; negative: P 1/2, R 1/1, F1 2/3; neutral: P 1/1, R 1/2, F1 2/3
    assert s["per_class"]["positive"] == {"support": 3, "accuracy": pytest.approx(2 / 3, abs=1e-6),
                                          "precision": 1.0, "f1": 0.8}
    assert s["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 2 / 3) / 3, abs=1e-6)


def test_tool_scores_name_arguments_and_validity():
    ref = json.dumps([{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}])
    assert tool_scores(ref, ref) == {"tool_name": 1.0, "tool_args": 1.0, "tool_args_valid": 1.0}
    extra = json.dumps([{"name": "get_weather", "arguments": {"unit": "Celsius", "city": "paris", "days": 3}}])
    assert tool_scores(extra, ref) == {"tool_name": 1.0, "tool_args": pytest.approx(2 / 3), "tool_args_valid": 1.0}
    openai_shape = json.dumps([{"type": "function", "function": {"name": "get_weather",
                                                                 "arguments": "{\"city\": \"Paris\"}"}}])
    assert tool_scores(openai_shape, ref) == {"tool_name": 1.0, "tool_args": 0.5, "tool_args_valid": 1.0}
    bad_args = json.dumps([{"name": "get_weather", "arguments": "{city: Paris"}])
    assert tool_scores(bad_args, ref) == {"tool_name": 1.0, "tool_args": 0.0, "tool_args_valid": 0.0}
    wrong = json.dumps([{"name": "get_time", "arguments": {"city": "Paris", "unit": "celsius"}}])
    assert tool_scores(wrong, ref) == {"tool_name": 0.0, "tool_args": 0.0, "tool_args_valid": 1.0}
    two = json.dumps([json.loads(ref)[0], {"name": "convert_currency", "arguments": {"amount": 5}}])
    assert tool_scores(two, ref) == {"tool_name": 0.5, "tool_args": 0.5, "tool_args_valid": 1.0}  # one call too many
    assert tool_scores("It is sunny.", ref) == {"tool_name": 0.0, "tool_args": 0.0, "tool_args_valid": 0.0}
    assert tool_scores(ref, "plain text")["tool_name"] is None


def test_parsing_helpers():
    assert parse_json(' {"a": 1} ') == ({"a": 1}, None)
    assert parse_json("")[1] == "answer is empty" and parse_json("{")[1].startswith("not JSON")
    assert conforms({"age": 3, "name": "x"}, SCHEMA) and not conforms({"age": "3", "name": "x"}, SCHEMA)
    assert schema_problem({"age": "3", "name": "x"}, SCHEMA) == "age: '3' is not of type 'integer'"
    assert parse_tool_calls('{"name": "f", "arguments": {}}') == (
        [{"name": "f", "arguments": {}, "arguments_valid": True}], None)  # one call, not in a list
    assert parse_tool_calls('[{"arguments": {}}]') == (None, "a tool call without a function name")
    assert tool_calls_text([{"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]) == (
        '[{"name": "f", "arguments": {"x": 1}}]', None)
    assert normalize_label("  NEGATIVE!", ["Positive", "Negative"]) == "Negative"
    assert normalize_label("Very   good", None) == "very good"


def test_chat_record_reads_tool_calls_tool_results_tools_and_formats():
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    row = {"request": {"tools": tools, "response_format": {"type": "text"}, "messages": [
        {"role": "user", "content": "Do it"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
        {"role": "tool", "tool_call_id": "1", "content": "done"}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": "It is done."}}]}}
    record, why = chat_record(row)
    assert why is None and record["tools"] == tools and "response_format" not in record  # text: no format
    assert [m["role"] for m in record["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert record["messages"][1]["content"] == '[{"name": "f", "arguments": {"a": 1}}]'
    assert (record["instruction"], record["response"]) == ("Do it", "It is done.")
    assert chat_record({"request": {"tools": "f", "messages": row["request"]["messages"][:1]},
                        "response": "ok"}) == (None, "'tools' is str; expected a list of tool definitions")
    bad_args = [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]
    assert chat_record({"messages": [{"role": "user", "content": "x"},
                                     {"role": "assistant", "tool_calls": bad_args}]})[1] == (
        "message 2 (assistant) tool_calls: arguments that are not a JSON object")


def test_detect_kind_is_text_unless_unambiguous():
    fmt = {"type": "json_object"}
    tools = [{"type": "function", "function": {"name": "f"}}]
    as_json = [{"response": f'{{"a": {i}}}', "response_format": fmt} for i in range(4)]
    assert detect_kind(as_json)[0] == "json"
    assert detect_kind(as_json[:3] + [{"response": '{"a": 1}'}])[0] == "text"  # one request did not ask for JSON
    assert detect_kind(as_json[:3] + [{"response": "oops", "response_format": fmt}])[0] == "text"
    calls = [{"response": '[{"name": "f", "arguments": {}}]', "tools": tools}] * 3
    assert detect_kind(calls) == ("tool_call", "all 3 targets are tool calls")
    assert detect_kind(calls + [{"response": "Done.", "tools": tools}]) == (
        "text", "3 of 4 targets are tool calls, the others are not")
    labels = [{"response": r} for r in ["yes", "No", "yes", "no", "yes", "maybe"]]
    assert detect_kind(labels) == ("label", "6 targets take 3 distinct short values")
    assert detect_kind([{"response": f"answer number {i}"} for i in range(6)])[0] == "text"


def test_kind_from_config_rules_and_validate(tmp_path):
    assert resolve_kind(config(), "json", "why") == ("json", "why")
    assert resolve_kind(config(kind="text"), "json") == ("text", "set in task.kind")
    assert resolve_kind(config(labels=["a", "b"]), "text")[0] == "label"
    rule = rule_for(config(), "label", config().evaluate.pass_rule, "pass_rule")
    assert [(c.metric, c.min) for c in rule] == [("exact_match", 0.8)]  # the default prose rule gives way
    cfg = build_config({"task": {"name": "t", "kind": "label"}, "data": {"source": "x.jsonl"},
                        "student": {"model": "m"},
                        "evaluate": {"pass_rule": [{"metric": "field_match", "min": 0.9},
                                                   {"metric": "similarity", "min": 80}]}})
    assert rule_for(cfg, "label", cfg.evaluate.pass_rule, "pass_rule") == cfg.evaluate.pass_rule  # written: kept
    assert kind_problems(cfg) == [("evaluate.pass_rule[0].metric: field_match is a json metric but task.kind is "
                                   "label; expected metrics of one kind (label: exact_match) or the text metrics")]
    (tmp_path / "s.json").write_text('{"type": 5}')
    bad = build_config({"task": {"name": "t", "schema": "s.json"}, "data": {"source": "x.jsonl"},
                        "student": {"model": "m"}}, base_dir=tmp_path)
    assert kind_problems(bad)[0].startswith("task.schema (") and "not a valid JSON Schema" in kind_problems(bad)[0]
    with pytest.raises(DuoError, match="task.schema: cannot read"):
        task_schema(build_config({"task": {"name": "t", "schema": "none.json"}, "data": {"source": "x.jsonl"},
                                  "student": {"model": "m"}}, base_dir=tmp_path), [])
