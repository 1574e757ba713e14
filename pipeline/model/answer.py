"""What every generation backend returns and shares: an :class:`Answer` (its text and why generation
stopped), the sampling seed, and the student loaded for generation with a round's adapter merged in."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ..config import Config

SEED = 42
STOPPED, TRUNCATED = "stop", "length"


class Answer(NamedTuple):
    """One generated answer: its text and ``finish_reason`` (``stop`` or ``length``, as
    OpenAI and vLLM say)."""

    text: str
    finish_reason: str


def load_merged(cfg: Config, base: str, adapter: Path | None):
    """The base model, with the adapter's LoRA deltas merged in (same outputs, no adapter cost per token)."""
    from peft import PeftModel

    from .student import load_model

    model = load_model(cfg, base, for_training=False, quantize=False)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return model.eval()
