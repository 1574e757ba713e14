"""One training run of the student with TRL's SFTTrainer, and the extra runs of ``finetune.seeds``.

``train`` trains on prompt/completion pairs and logs every step to ``train_log.jsonl``; ``train_stats``
summarises a run for the manifest. With ``finetune.seeds: [s1, s2, ...]`` the round trains one adapter
per seed on the same rows: each run sets its seed in the SFT config and seeds torch, numpy and
``random`` before the model loads (peft draws the LoRA weights before the trainer seeds itself), so
the adapters differ by the seed alone. The extra seeds train first, each saved to the stage's work folder
and freed before the next, so one model is in memory at a time. torch, TRL and transformers are imported
inside the functions.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import json
from pathlib import Path

from ..config import Config
from ..errors import DuoError
from ..progress import peak_rss_mb
from .sft_recipe import Recipe


def log_callback(path: Path):
    from transformers import TrainerCallback

    class TrainLog(TrainerCallback):
        """Appends every logged step to ``train_log.jsonl`` as it happens (main process only)."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            row = {"step": state.global_step, "epoch": state.epoch, **logs}
            with path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row, default=float) + "\n")

    return TrainLog()


def logged_losses(log_path: Path) -> list[float]:
    if not log_path.is_file():
        return []
    rows = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [float(r["loss"]) for r in rows if "loss" in r]


def train(cfg: Config, recipe: Recipe, pairs: list[dict], base: str, tokenizer, log_path: Path, *,
          report_to: str | None = None):
    """(trainer, model, train result) after training on ``pairs``; ``report_to``: a tracker
    (``pipeline.tracking.training``) that also gets the trainer's logs."""
    from datasets import Dataset
    from trl import SFTTrainer

    from .student import load_model

    model = load_model(cfg, base, for_training=True, quantize=True)
    args = recipe.sft
    if report_to:
        args = copy.copy(args)
        args.report_to = [report_to]
    try:
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs),
                             processing_class=tokenizer, peft_config=recipe.lora,
                             callbacks=[log_callback(log_path)])
    except (ValueError, TypeError) as exc:
        raise DuoError(f"finetune.sft: TRL refused the settings: {str(exc).splitlines()[0]}") from None
    return trainer, model, trainer.train()


def train_stats(trainer, result, model, log_path: Path, cuda: bool) -> dict:
    import torch

    losses = logged_losses(log_path)
    steps = int(trainer.state.global_step)
    runtime = float(result.metrics.get("train_runtime", 0.0))
    quantized = (getattr(model, "is_loaded_in_4bit", False)
                 or getattr(model, "is_loaded_in_8bit", False))
    return {
        "first_loss": round(losses[0], 4) if losses else None,
        "last_loss": round(losses[-1], 4) if losses else None,
        "seconds_per_step": round(runtime / steps, 3) if steps else None,
        "train_runtime_s": round(runtime, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "device": "cuda" if cuda else "cpu",
        "steps": steps,
        "quantized": bool(quantized),
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
        "num_processes": int(trainer.args.world_size),
    }


# --------------------------------------------------------------------------- finetune.seeds


def seed_folder(seed: int) -> str:
    """Where an extra seed's adapter and train log go, inside the finetune artifact (and the work folder)."""
    return f"seeds/{seed}"


def seeded(recipe: Recipe, seed: int) -> Recipe:
    """``recipe`` training with ``seed`` (its own SFT config: the recipe's is shared), and torch,
    numpy and ``random`` seeded with it now."""
    from transformers import set_seed

    set_seed(seed)
    sft = copy.copy(recipe.sft)
    sft.seed = seed
    return dataclasses.replace(recipe, sft=sft, sft_kwargs={**recipe.sft_kwargs, "seed": seed})


def run_summary(seed: int, adapter: str, stats: dict) -> dict:
    """What the manifest records of one seed's run (``extra.seeds``)."""
    keys = ("first_loss", "last_loss", "steps", "train_runtime_s")
    return {"seed": seed, "adapter": adapter, **{k: stats.get(k) for k in keys}}


def train_extra_seed(cfg: Config, recipe: Recipe, pairs: list[dict], base: str, tokenizer, work: Path,
                     seed: int, *, cuda: bool) -> dict:
    """Train ``seed``'s adapter and save it to ``work/seeds/<seed>/adapter`` (its train log beside it);
    the model is freed before this returns. Returns its ``run_summary``."""
    import torch

    out = work / seed_folder(seed)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train_log.jsonl"
    trainer, model, result = train(cfg, seeded(recipe, seed), pairs, base, tokenizer, log_path)
    summary = run_summary(seed, f"{seed_folder(seed)}/adapter",
                          train_stats(trainer, result, model, log_path, cuda))
    if trainer.is_world_process_zero():
        trainer.model.save_pretrained(out / "adapter")
    del trainer, model, result
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return summary
