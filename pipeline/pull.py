"""``duo pull``: take a round's adapter out of the store and try it.

The adapter comes from ``round-N/finetune`` in the configured store (a local folder, or the Hub repo at revision
``round-N`` via ``store.open``); the base model is the config's student. Each ``--prompt`` is answered through the
chat template, greedy unless ``infer.do_sample``; ``--output`` copies the adapter folder out.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

from .config import Config
from .errors import DuoError
from .flags import COMMON, Flag
from .store import Store, artifact_name, latest_round, open_store

FLAGS = COMMON + (
    Flag("--prompt", "A prompt to answer with the pulled adapter; repeatable (the variable: one per line).",
         kind="list"),
    Flag("--output", "Also copy the adapter folder here."),
    Flag("--max-new-tokens", "Tokens to generate at most (default: infer.max_new_tokens).", type=int),
)


def latest_finetuned_round(store: Store) -> int:
    """The highest round with a complete finetune artifact; DuoError when there is none."""
    round_no = latest_round(store, "finetune")
    if round_no is None:
        raise DuoError(f"no round has a finetune artifact in the {store.kind} store at {store.root}; "
                       f"run `duo finetune` (or `duo run`) first")
    return round_no


def adapter_folder(store: Store, round_no: int) -> Path:
    """The local folder of round ``round_no``'s adapter (downloaded first from a hub store)."""
    name = artifact_name("finetune", round_no)
    if not store.exists(name):
        raise DuoError(f"round {round_no} has no finetune artifact ('{name}') in the {store.kind} store at "
                       f"{store.root}")
    folder = store.open(name) / "adapter"
    if not (folder / "adapter_config.json").is_file():
        raise DuoError(f"{folder}: no adapter_config.json; the finetune artifact of round {round_no} is incomplete")
    return folder


def generate(cfg: Config, adapter: Path, prompts: list[str], max_new_tokens: int | None = None) -> list[str]:
    """Answers of base + adapter to ``prompts`` (each sent as one user turn through the chat template)."""
    from .generation import generate_transformers
    from .student import load_tokenizer, resolve_base

    if max_new_tokens:
        cfg = dataclasses.replace(cfg, infer=dataclasses.replace(cfg.infer, max_new_tokens=int(max_new_tokens)))
    base = resolve_base(cfg)
    tokenizer = load_tokenizer(cfg, base, for_generation=True)
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in prompts]
    # The same loader and decoding as `duo infer`: PeftModel.from_pretrained on the base, greedy by default.
    answers, _, _ = generate_transformers(cfg, base, adapter, texts, tokenizer)
    return answers


def command(cfg: Config, args: argparse.Namespace) -> int:
    store = open_store(cfg)
    round_no = int(args.round) if args.round is not None else latest_finetuned_round(store)
    adapter = adapter_folder(store, round_no)
    print(f"adapter: round {round_no}, {adapter}")
    output = getattr(args, "output", None)
    if output:
        dest = Path(output).expanduser()
        if dest.exists() and any(dest.iterdir()):
            raise DuoError(f"--output {dest}: folder exists and is not empty; choose a new or empty folder")
        shutil.copytree(adapter, dest, dirs_exist_ok=True)
        print(f"copied adapter to {dest}")
    prompts = [p for p in (getattr(args, "prompt", None) or []) if p.strip()]
    if not prompts:
        if not output:
            print("no --prompt given: nothing to generate")
        return 0
    answers = generate(cfg, adapter, prompts, getattr(args, "max_new_tokens", None))
    for prompt, answer in zip(prompts, answers):
        print(f"\n>>> {prompt}\n{answer}")
    return 0
