"""``duo validate``: the CLI already loaded the config and checked it against the schema; here the fine-tuning
recipe's keys are checked by the same code ``duo finetune`` runs (``sft_recipe.effective``), and the config is
summarised. peft and TRL are imported only when installed (~10 s); without them ``duo validate`` stays fast and says
that the recipe keys went unchecked.
"""

from __future__ import annotations

import argparse
import importlib.util

from .config import Config
from .flags import WITHOUT_ROUND
from .sft_recipe import effective

FLAGS = WITHOUT_ROUND


def recipe(cfg: Config) -> tuple[dict, dict, str]:
    """(LoRA kwargs, SFT kwargs, note): checked when peft and TRL are installed, else as written plus defaults."""
    if all(importlib.util.find_spec(name) is not None for name in ("peft", "trl")):
        try:
            lora, sft = effective(cfg)
            return lora, sft, ""
        except ImportError as exc:
            why = f"cannot import peft/trl: {str(exc).splitlines()[0]}"
    else:
        why = "peft/trl not installed"
    return dict(cfg.finetune.lora), dict(cfg.finetune.sft), f" (keys not checked: {why})"


def _pairs(values: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in values.items())


def command(cfg: Config, args: argparse.Namespace) -> int:
    lora, sft, note = recipe(cfg)  # an unknown recipe key raises DuoError: one line, exit 1
    svc = cfg.service
    print(f"{cfg.source_path}: ok (task {cfg.task.name}, student {cfg.student.model}, store {cfg.store.kind})")
    for role in ("synthesize", "judge"):
        s = getattr(svc, role)
        print(f"  service.{role}: " + (f"{s.provider}:{s.model}" if s else "none (offline)"))
    print(f"  finetune.lora: {_pairs(lora)}{note}")
    print(f"  finetune.sft: {_pairs(sft)}{note}")
    return 0
