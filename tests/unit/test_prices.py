"""Prices (issue 10, item 3): the built-in dated table, the config's prices first, own servers free, and a paid
model with no known price refused in one line unless ``allow_unpriced``."""

import pytest

from pipeline.cli import main
from pipeline.config import build_config
from pipeline.errors import DuoError
from pipeline.llm import Engine
from pipeline.prices import check_prices, price_of, table, table_price
from pipeline.stats.budget import Spend, request_cost
from tests.fakes.openai_fixtures import service_cfg


def test_table_is_dated_and_covers_current_openai_and_gemini_models():
    t = table()
    assert t["as_of"] == "2026-11-23" and "2026-11-23" in t["source"]
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3", "o4-mini", "gpt-5",
                  "gpt-5-mini", "gpt-5-nano"):
        assert table_price("openai", model) is not None, model
    for model in ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.0-flash"):
        assert table_price("gemini", model) is not None, model


@pytest.mark.parametrize("provider, model, expected", [
    ("openai", "gpt-4o", (2.5, 10.0)),
    ("openai", "gpt-4o-2024-08-06", (2.5, 10.0)),  # a dated snapshot is priced as its model
    ("openai", "gpt-4o-2024-05-13", (5.0, 15.0)),  # unless the table prices that snapshot itself
    ("openai", "gpt-4o-mini-2024-07-18", (0.15, 0.6)),
    ("openai", "gpt-4.1-nano-2025-04-14", (0.1, 0.4)),
    ("gemini", "gemini-2.0-flash-001", (0.1, 0.4)),
    ("gemini", "models/gemini-2.5-flash", (0.3, 2.5)),
    ("openai", "gpt-4o-audio-preview-2024-12-17", None),  # not the same model: no guess
    ("gemini", "gpt-4o", None),  # the provider is part of the name
])
def test_table_lookup_strips_date_suffixes_only(provider, model, expected):
    assert table_price(provider, model) == expected


def test_config_prices_win_over_the_table():
    svc = service_cfg(model="gpt-4o", price_input_per_1m=1.0, price_output_per_1m=2.0)
    assert price_of(svc) == (1.0, 2.0)
    half = service_cfg(model="gpt-4o", price_output_per_1m=20.0)  # only one given: the other from the table
    assert price_of(half) == (2.5, 20.0)
    assert price_of(service_cfg(model="gpt-4o")) == (2.5, 10.0)  # the schema's default is null: the table


def test_own_server_is_free_by_default_and_priced_when_the_config_says():
    assert price_of(service_cfg(model="llama3", base_url="http://localhost:8000/v1")) == (0.0, 0.0)
    priced = service_cfg(model="llama3", base_url="http://x/v1", price_input_per_1m=0.5, price_output_per_1m=1.0)
    assert price_of(priced) == (0.5, 1.0)


def test_unpriced_paid_model_is_refused_in_one_line_naming_the_key():
    with pytest.raises(DuoError) as exc:
        price_of(service_cfg(model="gpt-9-turbo"), "synthesize")
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("service.synthesize.price_input_per_1m: no known price for "
                                              "openai:gpt-9-turbo")
    assert "allow_unpriced" in msg
    with pytest.raises(DuoError, match="no known price"):
        Engine(service_cfg(model="gpt-9-turbo"), progress=False)  # the engine refuses too, before any send


def test_allow_unpriced_runs_at_zero():
    svc = service_cfg(model="gpt-9-turbo", allow_unpriced=True)
    assert price_of(svc) == (0.0, 0.0)


def _cfg(tmp_path, judge):
    doc = {"task": {"name": "demo"}, "data": {"source": "x.jsonl"}, "student": {"model": "m"},
           "service": {"synthesize": {"provider": "gemini", "model": "gemini-2.5-flash"}, "judge": judge}}
    return build_config(doc, base_dir=tmp_path)


def test_check_prices_names_the_role_and_the_panel_index(tmp_path):
    check_prices(_cfg(tmp_path, {"provider": "openai", "model": "gpt-4o"}))  # both known: no error
    with pytest.raises(DuoError, match=r"^service\.judge\.price_input_per_1m: no known price for openai:mystery"):
        check_prices(_cfg(tmp_path, {"provider": "openai", "model": "mystery"}))
    panel = [{"provider": "openai", "model": "gpt-4o"}, {"provider": "openai", "model": "mystery"}]
    with pytest.raises(DuoError, match=r"^service\.judge\[1\]\.price_input_per_1m"):
        check_prices(_cfg(tmp_path, panel))
    check_prices(_cfg(tmp_path, {"provider": "openai", "model": "mystery", "allow_unpriced": True}))


def test_schema_takes_allow_unpriced_and_null_prices(tmp_path):
    cfg = _cfg(tmp_path, {"provider": "openai", "model": "gpt-4o", "allow_unpriced": True})
    assert cfg.service.judge.allow_unpriced is True
    assert cfg.service.judge.price_input_per_1m is None and cfg.service.synthesize.allow_unpriced is False
    assert request_cost(cfg.service.synthesize, 1e6, 1e6) == pytest.approx(0.3 + 2.5)
    spend = Spend(cfg, cfg.service.synthesize, before=0.0)
    assert spend.worst_case([{"role": "user", "content": "x" * 300}], None, {"max_tokens": 100}) == \
        pytest.approx(((100 + 4) * 0.3 + 100 * 2.5) / 1e6)


def test_cli_refuses_an_unpriced_synthesizer_with_one_line(tmp_path, capsys):
    path = tmp_path / "duo.yaml"
    path.write_text("task: {name: demo}\ndata: {source: x.jsonl}\nstudent: {model: m}\n"
                    "service: {synthesize: {provider: openai, model: gpt-9-turbo}}\n")
    assert main(["synthesize", str(path), "--round", "1", "--plan"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: service.synthesize.price_input_per_1m: no known price")
