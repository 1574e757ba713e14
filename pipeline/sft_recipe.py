"""The fine-tuning recipe: ``finetune.lora`` -> peft ``LoraConfig``, ``finetune.sft`` -> TRL ``SFTConfig``.

Defaults follow the alignment-handbook recipes LlamaDuo used; the user's keys override them. A key that the
installed peft/TRL does not know is a one-line error naming it (``finetune.sft.<key>``), checked before any model
loads.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .config import Config
from .errors import DuoError

DEFAULT_LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": "all-linear",
                "task_type": "CAUSAL_LM"}
DEFAULT_SFT = {"learning_rate": 2e-4, "lr_scheduler_type": "cosine", "warmup_steps": 0.1, "num_train_epochs": 1,
               "per_device_train_batch_size": 4, "max_length": 1024, "logging_steps": 1, "save_strategy": "no",
               "report_to": "none", "seed": 42}
# Recipe names from older TRL/transformers that the installed versions renamed; mapped only when the old name
# is gone (transformers 5 folds warmup_ratio into warmup_steps: a float below 1 is a ratio).
SFT_ALIASES = {"warmup_ratio": "warmup_steps", "max_seq_length": "max_length"}
# The trainer's working folder belongs to the stage, not to the recipe.
SFT_RESERVED = {"output_dir"}


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def effective_lora(cfg: Config) -> dict:
    """Defaults + ``finetune.lora``; unknown keys raise DuoError naming ``finetune.lora.<key>``."""
    from peft import LoraConfig

    known = _fields(LoraConfig)
    for key in cfg.finetune.lora:
        if key not in known:
            raise DuoError(f"finetune.lora.{key}: not a peft LoraConfig option (peft's own names, e.g. r, "
                           f"lora_alpha, lora_dropout, target_modules)")
    return {**DEFAULT_LORA, **cfg.finetune.lora}


def effective_sft(cfg: Config) -> dict:
    """Defaults + ``finetune.sft`` with old names mapped; unknown keys raise DuoError naming ``finetune.sft.<key>``."""
    from trl import SFTConfig

    known = _fields(SFTConfig)
    out = dict(DEFAULT_SFT)
    for key, value in cfg.finetune.sft.items():
        target = key if key in known else SFT_ALIASES.get(key)
        if target is None or target not in known:
            raise DuoError(f"finetune.sft.{key}: not a TRL SFTConfig option (TRL's own names, e.g. learning_rate, "
                           f"num_train_epochs, per_device_train_batch_size, max_length)")
        if key in SFT_RESERVED:
            raise DuoError(f"finetune.sft.{key}: set by duo (the artifact store decides where outputs go); remove it")
        out[target] = value
    return out


def sft_config(cfg: Config, kwargs: dict, output_dir: Path, *, cuda: bool):
    """An ``SFTConfig`` for this machine: CPU runs get fp32 and no gradient checkpointing (FINDINGS: with
    ``use_cpu`` TRL would autocast to bf16 and checkpoint, ~3x slower); GPUs get bf16 where they have it."""
    import torch
    from trl import SFTConfig

    kwargs = dict(kwargs)
    # transformers 5.2x renamed gradient_checkpointing (the old name still works but warns).
    ckpt = "activation_checkpointing" if "activation_checkpointing" in _fields(SFTConfig) else "gradient_checkpointing"
    if cuda:
        bf16 = torch.cuda.is_bf16_supported()
        kwargs.setdefault("bf16", bf16)
        kwargs.setdefault("fp16", not bf16 and not kwargs["bf16"])
        if "gradient_checkpointing" not in kwargs:
            kwargs.setdefault(ckpt, True)
    else:
        kwargs.pop("gradient_checkpointing", None)
        kwargs.update({"use_cpu": True, "bf16": False, "fp16": False, ckpt: False})
    try:
        return SFTConfig(output_dir=str(output_dir), **kwargs)
    except (ValueError, TypeError) as exc:
        raise DuoError(f"finetune.sft: {str(exc).splitlines()[0]}") from None


def lora_config(kwargs: dict):
    from peft import LoraConfig

    try:
        return LoraConfig(**kwargs)
    except (ValueError, TypeError) as exc:
        raise DuoError(f"finetune.lora: {str(exc).splitlines()[0]}") from None
