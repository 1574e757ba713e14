"""Schema errors keep the bound they break (issue 19, item 7): the found value was cut out of jsonschema's message
wherever it appeared, so ``found 1`` with a minimum of 10 read "less than the minimum of 0"."""

from __future__ import annotations

import pytest

from pipeline.cli import main
from pipeline.schemas import schema_problems

SCHEMA = {"type": "object", "properties": {
    "a": {"type": "number", "exclusiveMinimum": 1},
    "b": {"type": "integer", "minimum": 10},
    "c": {"type": "number", "exclusiveMaximum": 1},
    "d": {"type": "number", "maximum": 0.5},
    "e": {"type": "string", "minLength": 3},
    "f": {"type": "string", "maxLength": 2},
    "g": {"type": "array", "minItems": 1},
    "h": {"type": "array", "maxItems": 1},
    "i": {"type": "string", "pattern": "^a+$"},
    "j": {"type": "object", "minProperties": 1},
    "k": {"const": "x"},
}}


@pytest.mark.parametrize("value, expected", [
    ({"a": 1}, "a: found 1; expected more than 1"),
    ({"b": 1}, "b: found 1; expected at least 10"),
    ({"c": 1}, "c: found 1; expected less than 1"),
    ({"d": 1}, "d: found 1; expected at most 0.5"),
    ({"e": "d"}, 'e: found "d"; expected at least 3 characters'),
    ({"f": "abc"}, 'f: found "abc"; expected at most 2 characters'),
    ({"g": []}, "g: found []; expected at least 1 item"),
    ({"h": [1, 1]}, "h: found [1, 1]; expected at most 1 item"),
    ({"i": "b"}, 'i: found "b"; expected text matching ^a+$'),
    ({"j": {}}, "j: found {}; expected at least 1 key"),
    ({"k": "y"}, 'k: found "y"; expected "x"'),
])
def test_each_bound_is_named(value, expected):
    assert schema_problems(value, SCHEMA) == [expected]


def test_a_config_value_below_its_bound_names_the_bound(tmp_path, capsys):
    """Regression (issue 19): ``duo validate`` printed "expected is less than or equal to the minimum of"."""
    (tmp_path / "data.jsonl").write_text('{"instruction": "q", "response": "a"}\n' * 3)
    path = tmp_path / "duo.yaml"
    path.write_text("task: {name: demo}\ndata: {source: data.jsonl, test: {size: 0}}\nstudent: {model: m}\n"
                    "synthesize: {pairs_per_request: 51}\nbudget: {max_rounds: 0}\n")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {path}: {line}" for line in ("budget.max_rounds: found 0; expected at least 1",
                                                         "data.test.size: found 0; expected more than 0",
                                                         "synthesize.pairs_per_request: found 51; expected at most 50")]
