"""Issue 19, item 3: every request carries the token limit its reservation assumed, and
``duo validate`` names the services that leave it at the default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.llm.openai_wire import limit_name
from pipeline.llm.usage import DEFAULT_MAX_OUTPUT_TOKENS, reply_limit, with_reply_limit, worst_case_tokens

MESSAGES = [{"role": "user", "content": "hello there"}]
LIMIT = {"max_completion_tokens": DEFAULT_MAX_OUTPUT_TOKENS}


@pytest.mark.parametrize("params, sent", [
    (None, LIMIT),
    ({"temperature": 0.2}, {"temperature": 0.2, **LIMIT}),
    ({"max_tokens": None, "seed": 1}, {"seed": 1, **LIMIT}),  # a null limit is no limit
    ({"max_tokens": 0}, LIMIT),
    ({"max_tokens": 300}, {"max_tokens": 300}),
    ({"max_completion_tokens": 300}, {"max_completion_tokens": 300}),
    ({"max_output_tokens": 300}, {"max_output_tokens": 300}),
])
def test_the_limit_sent_is_the_one_the_reservation_assumed(params, sent):
    assert with_reply_limit(params, "max_completion_tokens") == sent
    assert worst_case_tokens(MESSAGES, None, params or {})[1] == reply_limit(params or {})
    assert reply_limit(params or {}) == next(v for k, v in sent.items() if k.startswith("max_"))


def test_the_params_given_are_left_as_they_are():
    params = {"temperature": 0.2}
    with_reply_limit(params, "max_tokens")
    assert params == {"temperature": 0.2}  # the journal key is made from these


@pytest.mark.parametrize("base_url, name", [
    (None, "max_completion_tokens"),
    ("https://api.openai.com/v1", "max_completion_tokens"),
    ("http://127.0.0.1:8000/v1", "max_tokens"),
    ("https://my-vllm.example.org/v1", "max_tokens"),
])
def test_openai_gets_its_own_name_and_a_compatible_server_the_common_one(base_url, name):
    assert limit_name(base_url) == name


# -- duo validate --------------------------------------------------------------------------------

CONFIG = """
task: {name: demo}
data: {source: data.jsonl}
student: {model: m}
service:
  synthesize: {provider: openai, model: gpt-4o, price_input_per_1m: 2.5, price_output_per_1m: 10}
  judge:
    - {provider: gemini, model: gemini-2.0-flash, price_input_per_1m: 0.1, price_output_per_1m: 0.4}
    - {provider: openai, model: gpt-4o-mini, price_input_per_1m: 0.15, price_output_per_1m: 0.6,
       params: {max_tokens: 300}}
"""


@pytest.fixture
def config(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    rows = [{"instruction": f"question {i}", "response": f"answer {i}"} for i in range(30)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    path = tmp_path / "duo.yaml"
    path.write_text(CONFIG)
    return path


def test_validate_names_each_service_without_max_tokens_and_its_dearest_reply(config, capsys):
    assert main(["validate", str(config)]) == 0
    notes = [line.strip() for line in capsys.readouterr().out.splitlines() if "note:" in line]
    tail = ("sets no params.max_tokens; each request is sent with a limit of 2048 output tokens, "
            "so its reply costs at most ${} (plus its prompt)")
    assert notes == [f"note: service.synthesize: openai:gpt-4o {tail.format('0.0205')}",
                     f"note: service.judge[0]: gemini:gemini-2.0-flash {tail.format('0.0008')}"]


def test_validate_is_quiet_when_every_service_sets_max_tokens(config, capsys):
    config.write_text(CONFIG.replace("per_1m: 10}", "per_1m: 10, params: {max_tokens: 500}}")
                      .replace("per_1m: 0.4}", "per_1m: 0.4, params: {max_output_tokens: 200}}"))
    assert main(["validate", str(config)]) == 0
    assert "note:" not in capsys.readouterr().out


@pytest.mark.parametrize("value", ['"lots"', "0", "2.5"])
def test_a_token_limit_that_is_not_a_whole_number_is_one_error(config, capsys, value):
    argv = ["validate", str(config), "--set", f"service.synthesize.params.max_tokens={value}"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert errors[0].startswith("error: service.synthesize.params.max_tokens: found ")
    assert errors[0].endswith("; expected a whole number of tokens, 1 or more")
