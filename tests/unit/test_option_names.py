"""peft/TRL option names cached per installed version (issue 24, part 7: a fast ``duo validate``)."""

from __future__ import annotations

import json

import pytest

from pipeline.config import build_config
from pipeline.errors import DuoError
from pipeline.model import option_names
from pipeline.model.sft_recipe import effective

VERSIONS = {"peft": "0.21.2", "trl": "1.16.0", "transformers": "5.23.0"}
NAMES = ({"r", "lora_alpha", "lora_dropout", "target_modules", "task_type"},
         {"learning_rate", "lr_scheduler_type", "warmup_steps", "num_train_epochs",
          "per_device_train_batch_size", "max_length", "logging_steps", "save_strategy", "report_to", "seed",
          "output_dir"})


def config(**finetune):
    return build_config({"task": {"name": "t"}, "data": {"source": "x"}, "student": {"model": "m"},
                         "finetune": finetune})


@pytest.fixture
def imports(monkeypatch):
    """Fixed installed versions, and a fake import of peft/TRL that counts its calls."""
    calls = []
    monkeypatch.setattr(option_names, "installed_versions", lambda: dict(VERSIONS))

    def imported():
        calls.append(1)
        return set(NAMES[0]), set(NAMES[1])

    monkeypatch.setattr(option_names, "imported_names", imported)
    return calls


def test_the_first_call_fills_the_cache_and_later_calls_do_not_import(imports, tmp_path, monkeypatch):
    monkeypatch.setenv("DUO_CACHE", str(tmp_path / "cache"))
    assert option_names.known_names() == NAMES
    path = option_names.cache_file(VERSIONS)
    assert path.parent == tmp_path / "cache" / "option-names" and path.is_file()
    assert json.loads(path.read_text())["versions"] == VERSIONS
    assert option_names.known_names() == NAMES
    assert option_names.known_names() == NAMES
    assert len(imports) == 1


def test_cache_dir_falls_back_to_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.delenv("DUO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert option_names.cache_dir() == tmp_path / "xdg" / "duo"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert option_names.cache_dir() == tmp_path / "home" / ".cache" / "duo"


def test_another_version_s_cache_is_not_used(imports, monkeypatch):
    option_names.known_names()  # cached for VERSIONS
    upgraded = {**VERSIONS, "trl": "1.17.0"}
    monkeypatch.setattr(option_names, "installed_versions", lambda: dict(upgraded))
    assert option_names.cache_file(upgraded) != option_names.cache_file(VERSIONS)
    assert option_names.known_names() == NAMES
    assert len(imports) == 2  # the upgrade imported again ...
    assert option_names.cache_file(upgraded).is_file()  # ... and cached its own names


def test_a_file_that_records_other_versions_is_not_trusted(imports):
    path = option_names.cache_file(VERSIONS)
    path.parent.mkdir(parents=True)
    # the right file name, but written for another transformers (and with names that would accept a typo)
    other = {**VERSIONS, "transformers": "4.0"}
    path.write_text(json.dumps({"format": option_names.FORMAT, "versions": other,
                                "lora": sorted(NAMES[0] | {"rank"}), "sft": sorted(NAMES[1])}))
    assert option_names.known_names() == NAMES
    assert len(imports) == 1
    assert json.loads(path.read_text())["versions"] == VERSIONS  # rewritten for the installed versions


@pytest.mark.parametrize("content", ["{not json", json.dumps([1, 2]), json.dumps({"format": 1})])
def test_a_broken_cache_file_is_refilled(imports, content):
    path = option_names.cache_file(VERSIONS)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    assert option_names.known_names() == NAMES and len(imports) == 1
    assert option_names.known_names() == NAMES and len(imports) == 1


def test_an_unwritable_cache_still_answers(imports, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("DUO_CACHE", str(blocker / "duo"))  # a folder under a file: cannot be made
    assert option_names.known_names() == NAMES
    assert option_names.known_names() == NAMES
    assert len(imports) == 2


@pytest.mark.parametrize("section, key", [("lora", "rank"), ("sft", "learnig_rate")])
def test_unknown_names_are_one_line_errors_from_a_warm_cache(monkeypatch, section, key):
    effective(config())  # fills the cache from the installed peft/TRL

    def no_import():
        raise AssertionError("peft/TRL imported although their names are cached")

    monkeypatch.setattr(option_names, "imported_names", no_import)
    lora, sft = effective(config(lora={"r": 4}, sft={"max_steps": 3}))
    assert lora["r"] == 4 and sft["max_steps"] == 3
    with pytest.raises(DuoError) as exc:
        effective(config(**{section: {key: 1}}))
    assert str(exc.value).startswith(f"finetune.{section}.{key}: ") and "\n" not in str(exc.value)


def test_the_cached_names_are_the_installed_ones():
    cold = option_names.known_names()
    assert cold == option_names.imported_names()
    assert option_names.known_names() == cold  # warm
    assert {"r", "lora_alpha"} <= cold[0] and {"learning_rate", "max_length"} <= cold[1]
