"""The fine-tuning recipe in one call: ``build(cfg, output_dir, cuda=...) -> Recipe``.

``finetune.lora`` becomes a peft ``LoraConfig`` and ``finetune.sft`` a TRL ``SFTConfig``, by the
libraries' own names. Their defaults (the alignment-handbook recipes LlamaDuo used) are in
``schemas/config.schema.json`` and the config loader fills them in, so a user's key replaces its
default only. A key that the installed peft/TRL does not know is a one-line error naming it
(``finetune.sft.<key>``), raised before any model loads; ``duo validate`` runs the same check
(``effective``, with the names cached per installed version: ``option_names``). peft and TRL are
imported inside the functions, never at import time.
``max_length: auto`` builds with no limit; ``finetune`` measures the training rows
(``trainset.length_counts``) and sets the number with ``with_max_length`` before it trains.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import DuoError
from ..schemas import load_schema

# Recipe names from older TRL/transformers that the installed versions renamed; mapped only when the old name
# is gone (transformers 5 folds warmup_ratio into warmup_steps: a float below 1 is a ratio).
SFT_ALIASES = {"warmup_ratio": "warmup_steps", "max_seq_length": "max_length"}
# The trainer's working folder belongs to the stage, not to the recipe.
SFT_RESERVED = {"output_dir"}
_NO_DEFAULT = object()
AUTO = "auto"  # finetune.sft.max_length: auto (trainset.auto_max_length)


@dataclass(frozen=True)
class Recipe:
    """What ``duo finetune`` trains with; the ``*_kwargs`` dicts are what the manifest
    and model card record."""

    lora: Any  # peft.LoraConfig
    # trl.SFTConfig, adjusted to this machine (CPU: fp32, no checkpointing, micro-batches of one row;
    # CUDA: bf16 where supported).
    sft: Any
    quantization: dict | None  # BitsAndBytesConfig kwargs when the base loads in 4/8 bits (QLoRA), else None
    lora_kwargs: dict
    sft_kwargs: dict


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def sft_defaults() -> dict:
    """The schema's defaults for ``finetune.sft``."""
    props = load_schema("config.schema.json")["properties"]["finetune"]["properties"]["sft"]["properties"]
    return {key: sub["default"] for key, sub in props.items() if "default" in sub}


def lora_kwargs(section: dict, known: set[str]) -> dict:
    """``finetune.lora`` (defaults filled) checked against peft's ``LoraConfig`` field names ``known``."""
    for key in section:
        if key not in known:
            raise DuoError(f"finetune.lora.{key}: not a peft LoraConfig option (peft's own names, e.g. r, "
                           f"lora_alpha, lora_dropout, target_modules)")
    return dict(section)


def sft_kwargs(section: dict, known: set[str]) -> dict:
    """``finetune.sft`` (defaults filled) checked against TRL's ``SFTConfig`` field names
    ``known``, old names mapped.

    An old name beats its new name's default; setting both to different values is an error.
    """
    out, renamed = {}, {}
    for key, value in section.items():
        target = key if key in known else SFT_ALIASES.get(key)
        if target is None or target not in known:
            raise DuoError(f"finetune.sft.{key}: not a TRL SFTConfig option "
                           "(TRL's own names, e.g. learning_rate, "
                           f"num_train_epochs, per_device_train_batch_size, max_length)")
        if key in SFT_RESERVED:
            raise DuoError(f"finetune.sft.{key}: set by duo "
                           "(the artifact store decides where outputs go); remove it")
        if target == key:
            out[key] = value
        else:
            renamed[target] = (key, value)
    defaults = sft_defaults()
    for target, (old, value) in renamed.items():
        if target in section and section[target] != defaults.get(target, _NO_DEFAULT):
            raise DuoError(f"finetune.sft.{old}: the old name of {target}, which is set too; keep one")
        out[target] = value
    return out


def effective(cfg: Config) -> tuple[dict, dict]:
    """(LoraConfig kwargs, SFTConfig kwargs) of ``cfg``: schema defaults < the user's keys, checked
    by the installed peft and TRL's option names (``option_names.known_names``: cached per version, imported
    on a miss). Raises DuoError naming ``finetune.lora.<key>`` / ``finetune.sft.<key>``."""
    from .option_names import known_names

    lora_names, sft_names = known_names()
    return lora_kwargs(cfg.finetune.lora, lora_names), sft_kwargs(cfg.finetune.sft, sft_names)


def quantization(cfg: Config, *, cuda: bool) -> dict | None:
    """``finetune.quantization`` when this run loads the base in 4 or 8 bits (CUDA and
    load_in_4/8bit), else None."""
    q = dict(cfg.finetune.quantization or {})
    return q if cuda and (q.get("load_in_4bit") or q.get("load_in_8bit")) else None


def cpu_micro_batches(kwargs: dict) -> dict:
    """On CPU a batch of B rows trains as B micro-batches of one row: ``per_device_train_batch_size: 1``
    and ``gradient_accumulation_steps`` times B. Each optimizer step sees the same rows and the same loss
    (TRL divides by the tokens of the whole accumulated batch), but no padding is computed and one row's
    activations are held at a time: the example's fine-tune (batch 4, max_length 384) peaks at 2.6 GiB
    instead of 6.5, no slower. Gradient checkpointing saves as much but costs ~30% time, so it stays off
    (README.md, Benchmarks)."""
    batch = int(kwargs.get("per_device_train_batch_size") or 1)
    if batch <= 1:
        return {}
    return {"per_device_train_batch_size": 1,
            "gradient_accumulation_steps": int(kwargs.get("gradient_accumulation_steps") or 1) * batch}


def _sft_config(kwargs: dict, output_dir: Path, *, cuda: bool):
    """An ``SFTConfig`` for this machine: CPU runs get fp32, no gradient checkpointing (FINDINGS: with
    ``use_cpu`` TRL would autocast to bf16 and checkpoint, ~3x slower) and micro-batches of one row
    (``cpu_micro_batches``); GPUs get bf16 where they have it."""
    import torch
    from trl import SFTConfig

    kwargs = dict(kwargs)
    if kwargs.get("max_length") == AUTO:  # resolved from the training rows by finetune (with_max_length)
        kwargs["max_length"] = None
    # transformers 5.2x renamed gradient_checkpointing (the old name still works but warns).
    renamed = "activation_checkpointing" in _fields(SFTConfig)
    ckpt = "activation_checkpointing" if renamed else "gradient_checkpointing"
    if cuda:
        bf16 = torch.cuda.is_bf16_supported()
        kwargs.setdefault("bf16", bf16)
        kwargs.setdefault("fp16", not bf16 and not kwargs["bf16"])
        if "gradient_checkpointing" not in kwargs:
            kwargs.setdefault(ckpt, True)
    else:
        kwargs.pop("gradient_checkpointing", None)
        kwargs.update({"use_cpu": True, "bf16": False, "fp16": False, ckpt: False})
        kwargs.update(cpu_micro_batches(kwargs))
    try:
        return SFTConfig(output_dir=str(output_dir), **kwargs)
    except (ValueError, TypeError) as exc:
        raise DuoError(f"finetune.sft: {str(exc).splitlines()[0]}") from None


def _lora_config(kwargs: dict):
    from peft import LoraConfig

    try:
        return LoraConfig(**kwargs)
    except (ValueError, TypeError) as exc:
        raise DuoError(f"finetune.lora: {str(exc).splitlines()[0]}") from None


def build(cfg: Config, output_dir: str | Path, *, cuda: bool) -> Recipe:
    """The checked recipe of ``cfg``; ``output_dir`` is the trainer's working folder,
    ``cuda`` whether it trains on a GPU. Raises DuoError (one line, naming the key) for a
    recipe peft or TRL refuses."""
    lora, sft = effective(cfg)
    return Recipe(lora=_lora_config(lora), sft=_sft_config(sft, Path(output_dir), cuda=cuda),
                  quantization=quantization(cfg, cuda=cuda), lora_kwargs=lora, sft_kwargs=sft)


def with_max_length(recipe: Recipe, max_length: int | None) -> Recipe:
    """``recipe`` training at ``max_length`` tokens (``finetune.sft.max_length: auto`` once the
    rows are measured); ``sft_kwargs`` then records the number, so the manifest and model card say
    what was trained with."""
    recipe.sft.max_length = max_length
    return dataclasses.replace(recipe, sft_kwargs={**recipe.sft_kwargs, "max_length": max_length})
