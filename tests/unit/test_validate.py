"""``duo validate`` catches what would otherwise fail after money is spent; bad inputs give one line, exit 1,
no traceback and nothing created (issue 10, items 7 and 8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.flags import round_number

BASE = """
task: {name: demo}
data: {source: data.jsonl}
student: {model: m}
"""


def rows(n: int = 30) -> str:
    return "".join(json.dumps({"instruction": f"question {i}", "response": f"answer {i}"}) + "\n" for i in range(n))


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch):
    for name in ("OPENAI_API_KEY", "GEMINI_API_KEY", "DUO_STRICT", "DUO_ROUND", "DUO_SET", "DUO_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def setup(tmp_path: Path, extra: str = "", data: str | bytes | None = None, name: str = "data.jsonl") -> Path:
    if data is None:
        data = rows()
    target = tmp_path / name
    target.write_bytes(data) if isinstance(data, bytes) else target.write_text(data)
    path = tmp_path / "duo.yaml"
    path.write_text(BASE + extra)
    return path


def one_error(capsys, argv: list[str]) -> str:
    """Run the CLI; it must exit 1 with exactly one ``error:`` line and no traceback; return that line."""
    assert main(argv) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    return errors[0]


def created(tmp_path: Path) -> list[str]:
    """Artifact files under the task's store (an empty store folder and its lock files do not count)."""
    store = tmp_path / ".duo"
    return sorted(str(p.relative_to(store)) for p in store.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(store).parts[1:]))


# -- duo validate (item 7) --------------------------------------------------------------------------------------

def test_a_good_config_with_its_data_validates(tmp_path, capsys):
    assert main(["validate", str(setup(tmp_path))]) == 0
    assert "ok" in capsys.readouterr().out
    assert created(tmp_path) == []


def test_a_lora_value_of_the_wrong_type(tmp_path, capsys):
    line = one_error(capsys, ["validate", str(setup(tmp_path, 'finetune: {lora: {r: "eight"}}\n'))])
    assert 'finetune.lora.r: found "eight" (string); expected integer' in line


def test_a_missing_data_file(tmp_path, capsys):
    path = setup(tmp_path)
    (tmp_path / "data.jsonl").unlink()
    line = one_error(capsys, ["validate", str(path)])
    assert line == f"error: data.source: file not found: {tmp_path.resolve() / 'data.jsonl'}"


def test_first_rows_that_do_not_fit_the_column_mapping(tmp_path, capsys):
    line = one_error(capsys, ["validate", str(setup(tmp_path, "  ", rows()))] + ["--set", "data.columns.response=output"])
    assert "data.jsonl:1: missing column 'output' (data.columns.response" in line
    assert "(and 19 more of the first 20 rows)" in line


@pytest.mark.parametrize("size, expected", [
    (1.5, "data.test.size: found 1.5; expected a fraction in (0, 1) or a whole count of test rows"),
    (30, "data.test.size: found 30 test rows; expected fewer than the 30 rows of data.jsonl"),
])
def test_a_test_size_that_does_not_fit_the_data(tmp_path, capsys, size, expected):
    line = one_error(capsys, ["validate", str(setup(tmp_path)), "--set", f"data.test.size={size}"])
    assert expected in line


def test_a_rule_minimum_beyond_the_judge_scale(tmp_path, capsys):
    extra = "evaluate: {pass_rule: [{metric: similarity, min: 900}]}\n"
    line = one_error(capsys, ["validate", str(setup(tmp_path, extra))])
    assert line == "error: evaluate.pass_rule[0].min: found 900; expected similarity mean within 1–100"


def test_a_threshold_beyond_its_metric_range(tmp_path, capsys):
    line = one_error(capsys, ["validate", str(setup(tmp_path, "evaluate: {thresholds: {rougeL: 3}}\n"))])
    assert line == "error: evaluate.thresholds.rougeL: found 3; expected 0–1"


def test_an_offline_rule_and_a_difference_rule_are_checked_on_their_own_scales(tmp_path, capsys):
    extra = ("evaluate:\n  pass_rule: [{metric: similarity, vs: baseline, stat: ci_low, above: -5}]\n"
             "  offline_pass_rule: [{metric: embedding, min: 2}]\n")
    line = one_error(capsys, ["validate", str(setup(tmp_path, extra))])
    assert line == "error: evaluate.offline_pass_rule[0].min: found 2; expected embedding mean within -1–1"


def test_a_hub_store_without_a_namespace(tmp_path, capsys):
    line = one_error(capsys, ["validate", str(setup(tmp_path, "store: {kind: hub}\n"))])
    assert line.startswith("error: store.namespace: missing; expected the Hub user or organisation")


def test_a_missing_template_and_schema_are_named_by_field(tmp_path, capsys):
    line = one_error(capsys, ["validate", str(setup(tmp_path, "synthesize: {prompt: nope.j2}\n"))])
    assert line.startswith("error: synthesize.prompt: prompt template 'nope.j2' not found")
    line = one_error(capsys, ["validate", str(setup(tmp_path, "evaluate: {schema: nope.json}\n"))])
    assert line.startswith("error: evaluate.schema: reply schema 'nope.json' not found")


def test_a_missing_api_key_warns_locally_and_fails_with_strict(tmp_path, capsys, monkeypatch):
    path = setup(tmp_path, "service: {judge: {provider: gemini, model: gemini-2.5-flash}}\n")
    assert main(["validate", str(path)]) == 0
    err = capsys.readouterr().err
    assert "warning: service.judge: $GEMINI_API_KEY is not set" in err and "error:" not in err
    line = one_error(capsys, ["validate", str(path), "--strict"])
    assert line.startswith("error: service.judge: $GEMINI_API_KEY is not set")
    monkeypatch.setenv("DUO_STRICT", "true")  # how the workflow's composite action asks for it
    assert one_error(capsys, ["validate", str(path)]) == line
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    assert main(["validate", str(path)]) == 0


def test_a_paid_model_with_no_known_price_is_refused_before_anything_is_paid(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    path = setup(tmp_path, "service: {judge: {provider: openai, model: my-private-model}}\n")
    line = one_error(capsys, ["validate", str(path)])
    assert line.startswith("error: service.judge.price_input_per_1m") and "my-private-model" in line
    (tmp_path / "ok").mkdir()
    ok = setup(tmp_path / "ok", "service: {judge: {provider: openai, model: my-private-model, allow_unpriced: true}}\n")
    assert main(["validate", str(ok)]) == 0


# -- bad inputs (item 8) -------------------------------------------------------------------------------------------

def test_non_utf8_bytes_in_the_config(tmp_path, capsys):
    path = tmp_path / "duo.yaml"
    path.write_bytes(BASE.encode() + b"# caf\xe9\n")
    line = one_error(capsys, ["validate", str(path)])
    assert line == f"error: {path}:5: not UTF-8 text (byte 0xe9 at offset {len(BASE) + 5}); save the config as UTF-8"


def test_a_store_path_that_is_a_file(tmp_path, capsys):
    path = setup(tmp_path, "store: {path: taken}\n")
    (tmp_path / "taken").write_text("x")
    expected = f"error: store.path: {tmp_path.resolve() / 'taken'} is a file; expected a folder"
    assert one_error(capsys, ["validate", str(path)]).startswith(expected)
    assert one_error(capsys, ["prepare", str(path)]).startswith(expected)
    assert (tmp_path / "taken").read_text() == "x"


def test_a_corrupted_manifest_in_the_store(tmp_path, capsys):
    path = setup(tmp_path)
    assert main(["prepare", str(path)]) == 0
    manifest = tmp_path / ".duo" / "demo" / "prepare" / "manifest.json"
    manifest.write_text('{"stage": "prep')
    line = one_error(capsys, ["prepare", str(path)])
    assert line.startswith(f"error: {manifest}:1: damaged manifest (not valid JSON")
    assert manifest.read_text() == '{"stage": "prep'


def test_an_unknown_provider_names_provider_and_its_values(tmp_path, capsys):
    line = one_error(capsys, ["validate", str(setup(tmp_path, "service: {judge: {provider: claude, model: x}}\n"))])
    assert line.endswith('service.judge.provider: found "claude" (string); expected one of "openai", "gemini"')


def test_an_empty_config_prints_each_problem_once(tmp_path, capsys):
    path = tmp_path / "duo.yaml"
    path.write_text("")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: {path}: {key}: missing required field" for key in ("task", "data", "student")]


def test_a_csv_with_the_wrong_header(tmp_path, capsys):
    path = setup(tmp_path, "", "question,answer\nq1,a1\nq2,a2\nq3,a3\n", name="data.csv")
    path.write_text(BASE.replace("data.jsonl", "data.csv"))
    line = one_error(capsys, ["prepare", str(path)])
    assert line == (f"error: {tmp_path.resolve() / 'data.csv'}:1: CSV header has 'question', 'answer'; expected "
                    f"column 'instruction' (data.columns.instruction), 'response' (data.columns.response)")
    assert created(tmp_path) == []
    assert one_error(capsys, ["validate", str(path)]) == line


def test_a_json_file_holding_one_object(tmp_path, capsys):
    path = setup(tmp_path, "", '{\n  "instruction": "q",\n  "response": "a"\n}\n', name="data.json")
    path.write_text(BASE.replace("data.jsonl", "data.json"))
    line = one_error(capsys, ["prepare", str(path)])
    assert line.startswith(f"error: {tmp_path.resolve() / 'data.json'}: found one JSON object; expected a JSON list")
    assert created(tmp_path) == []


def test_no_valid_rows_names_the_first_bad_line_without_advising_skip(tmp_path, capsys):
    path = setup(tmp_path, "", '{"q": 1}\n{"q": 2}\n{"q": 3}\n')
    line = one_error(capsys, ["prepare", str(path)])
    assert "only 0 valid row(s) out of 3; need at least 2; first bad line 1: missing column 'instruction'" in line
    assert "on_bad_row" not in line
    assert created(tmp_path) == []


def test_an_oversized_row_is_a_bad_row_naming_its_line(tmp_path, capsys):
    big = json.dumps({"instruction": "x" * 500, "response": "y"}) + "\n"
    path = setup(tmp_path, "", rows(5) + big)
    path.write_text(BASE.replace("data: {source: data.jsonl}",
                                 "data: {source: data.jsonl, max_row_chars: 100, on_bad_row: fail}"))
    expected = f"{tmp_path.resolve() / 'data.jsonl'}:6: row has 501 characters; expected at most 100 (data.max_row_chars)"
    assert one_error(capsys, ["prepare", str(path)]).startswith(f"error: {expected} (data.on_bad_row is 'fail'")
    assert one_error(capsys, ["validate", str(path)]) == f"error: {expected}"
    assert created(tmp_path) == []
    assert main(["prepare", str(path), "--set", "data.on_bad_row=skip"]) == 0
    bad = [json.loads(x) for x in (tmp_path / ".duo/demo/prepare/bad_rows.jsonl").read_text().splitlines()]
    assert [(b["line"], b["reason"].split(";")[0]) for b in bad] == [(6, "row has 501 characters")]
    assert len(bad[0]["row"]) < 200  # kept cut, not verbatim


def test_round_accepts_n_zero_and_latest_only():
    assert round_number("3") == 3 and round_number("0") == 0
    assert round_number("latest") is None and round_number(" Latest ") is None


@pytest.mark.parametrize("value", ["-1", "two"])
def test_a_bad_round_is_one_line_and_creates_nothing(tmp_path, capsys, monkeypatch, value):
    path = setup(tmp_path)
    line = one_error(capsys, ["infer", str(path), "--round", value])
    assert line == (f"error: duo infer: argument --round: '{value}': expected a round number N >= 0 (0 = the untuned "
                    f"baseline) or 'latest' (see duo infer --help)")
    monkeypatch.setenv("DUO_ROUND", value)
    line = one_error(capsys, ["infer", str(path)])
    assert line == (f"error: DUO_ROUND='{value}': expected a round number N >= 0 (0 = the untuned baseline) or "
                    f"'latest' for --round")
    assert not (tmp_path / ".duo").exists() or created(tmp_path) == []


def test_scrubbing_without_its_detector_warns_and_stays_valid(tmp_path, capsys, monkeypatch):
    import importlib.util

    path = setup(tmp_path, "service: {judge: {provider: gemini, model: gemini-2.5-flash}}\n")
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    assert main(["validate", str(path), "--strict"]) == 0
    assert "presidio" not in capsys.readouterr().err  # installed here: nothing to say
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "presidio_analyzer"
                        else real(name, *a))  # a runner without the privacy extra
    assert main(["validate", str(path), "--strict"]) == 0  # the job that validates may not be the one that sends
    err = capsys.readouterr().err
    assert "warning: privacy.scrub: on, but presidio-analyzer is not installed here" in err
    (tmp_path / "off").mkdir()
    off = setup(tmp_path / "off", "service: {judge: {provider: gemini, model: gemini-2.5-flash}}\n"
                "privacy: {scrub: false}\n")
    assert main(["validate", str(off)]) == 0 and "presidio" not in capsys.readouterr().err


def test_a_parity_rule_without_a_service_to_ask_again(tmp_path, capsys):
    extra = "evaluate: {offline_pass_rule: [{metric: rougeL, vs: service, stat: ci_low, min: -0.03}]}\n"
    line = one_error(capsys, ["validate", str(setup(tmp_path, extra))])
    assert line == ("error: evaluate.offline_pass_rule[0].vs: service, but no ceiling is measured (no "
                    "service.synthesize to ask); expected a service to ask once more for each test prompt, "
                    "or the rule can never hold")
    extra = "evaluate: {ceiling: {enabled: true}}\n"
    line = one_error(capsys, ["validate", str(setup(tmp_path, extra))])
    assert line.startswith("error: evaluate.ceiling.enabled: true, but no service.synthesize is configured")
