"""The fine-tuning recipe: schema defaults < YAML < --set, key by key; unknown keys and old names; ``build``."""

from __future__ import annotations

import pytest
import yaml

from pipeline.config import build_config, load_config
from pipeline.errors import ConfigError, DuoError
from pipeline.model.sft_recipe import build, cpu_micro_batches, effective, quantization

LORA_DEFAULTS = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": "all-linear",
                 "task_type": "CAUSAL_LM"}
SFT_DEFAULTS = {"learning_rate": 2e-4, "lr_scheduler_type": "cosine", "warmup_steps": 0.1, "num_train_epochs": 1,
                "per_device_train_batch_size": 4, "max_length": 1024, "logging_steps": 1, "save_strategy": "no",
                "report_to": "none", "seed": 42}


def config(**finetune):
    return build_config({"task": {"name": "t"}, "data": {"source": "x"}, "student": {"model": "m"},
                         "finetune": finetune})


def test_defaults_are_the_schema_s():
    lora, sft = effective(config())
    assert lora == LORA_DEFAULTS
    assert sft == SFT_DEFAULTS


def test_user_values_win_key_by_key_and_unset_keys_keep_their_defaults(tmp_path):
    cfg = config(lora={"r": 16, "lora_dropout": 0.0}, sft={"learning_rate": 1e-3, "max_steps": 5})
    recipe = build(cfg, tmp_path / "trainer", cuda=False)
    assert recipe.lora_kwargs == {**LORA_DEFAULTS, "r": 16, "lora_dropout": 0.0}
    assert recipe.sft_kwargs == {**SFT_DEFAULTS, "learning_rate": 1e-3, "max_steps": 5}
    # ... and what peft and TRL were given, not only what the manifest records
    assert (recipe.lora.r, recipe.lora.lora_alpha, recipe.lora.lora_dropout) == (16, 16, 0.0)
    assert (recipe.sft.learning_rate, recipe.sft.max_steps, recipe.sft.num_train_epochs) == (1e-3, 5, 1)
    assert recipe.sft.output_dir == str(tmp_path / "trainer")
    assert recipe.sft.use_cpu and not recipe.sft.bf16  # CPU: fp32 (FINDINGS)
    assert recipe.quantization is None


def test_set_overrides_the_yaml_which_overrides_the_default(tmp_path):
    path = tmp_path / "duo.yaml"
    path.write_text(yaml.safe_dump({"task": {"name": "t"}, "data": {"source": "x"}, "student": {"model": "m"},
                                    "finetune": {"lora": {"r": 16, "lora_alpha": 32}}}))
    lora, _ = effective(load_config(path, ["finetune.lora.r=64"]))
    assert lora == {**LORA_DEFAULTS, "r": 64, "lora_alpha": 32}


@pytest.mark.parametrize("section, key", [("lora", "rank"), ("sft", "learnig_rate"), ("sft", "output_dir")])
def test_unknown_or_reserved_key_is_one_line_naming_it(tmp_path, section, key):
    cfg = config(**{section: {key: 1}})
    with pytest.raises(DuoError) as exc:
        build(cfg, tmp_path, cuda=False)
    assert str(exc.value).startswith(f"finetune.{section}.{key}: ") and "\n" not in str(exc.value)


@pytest.mark.parametrize("old, new, value", [("warmup_ratio", "warmup_steps", 0.05),
                                             ("max_seq_length", "max_length", 256)])
def test_old_names_map_to_new_ones_and_beat_the_default(old, new, value):
    _, sft = effective(config(sft={old: value}))
    assert sft[new] == value and old not in sft


def test_old_and_new_name_both_set_is_an_error():
    with pytest.raises(DuoError, match=r"^finetune.sft.warmup_ratio: the old name of warmup_steps, which is set too"):
        effective(config(sft={"warmup_ratio": 0.05, "warmup_steps": 0.2}))


def test_schema_checks_the_types_of_known_recipe_keys():
    with pytest.raises(ConfigError) as exc:
        config(lora={"r": "sixteen"})
    assert exc.value.problems == ['finetune.lora.r: found "sixteen" (string); expected integer']


def test_quantization_only_on_cuda_and_only_when_asked():
    asked = config(quantization={"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"})
    assert quantization(asked, cuda=True) == {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}
    assert quantization(asked, cuda=False) is None
    assert quantization(config(), cuda=True) is None



def test_max_length_auto_is_accepted_and_resolved_by_with_max_length(tmp_path):
    """Issue #13: ``max_length: auto`` passes the schema; TRL gets no limit until finetune measures the rows."""
    from pipeline.model.sft_recipe import with_max_length

    recipe = build(config(sft={"max_length": "auto"}), tmp_path / "trainer", cuda=False)
    assert recipe.sft_kwargs["max_length"] == "auto" and recipe.sft.max_length is None
    fitted = with_max_length(recipe, 312)
    assert fitted.sft.max_length == 312 and fitted.sft_kwargs == {**SFT_DEFAULTS, "max_length": 312}
    with pytest.raises(ConfigError, match="max_length"):
        config(sft={"max_length": "long"})


@pytest.mark.parametrize("sft, micro, accumulate", [({}, 1, 4), ({"per_device_train_batch_size": 1}, 1, 1),
                                                    ({"gradient_accumulation_steps": 2}, 1, 8)])
def test_cpu_trains_a_batch_as_micro_batches_of_one_row(tmp_path, sft, micro, accumulate):
    """Issue #24 part 6: the same effective batch in a third of the memory (cpu_micro_batches); the manifest
    records the recipe as written."""
    recipe = build(config(sft=sft), tmp_path, cuda=False)
    trained = recipe.sft
    assert (trained.per_device_train_batch_size, trained.gradient_accumulation_steps) == (micro, accumulate)
    assert recipe.sft_kwargs == {**SFT_DEFAULTS, **sft}


def test_micro_batches_leave_a_batch_of_one_alone():
    assert cpu_micro_batches({"per_device_train_batch_size": 1, "gradient_accumulation_steps": 3}) == {}
    assert cpu_micro_batches({"per_device_train_batch_size": 2}) == {"per_device_train_batch_size": 1,
                                                                     "gradient_accumulation_steps": 2}
