"""``duo pull``: take a round's adapter out of the store and try it.

The adapter comes from ``round-N/finetune`` in the configured store (a local folder, or the Hub repo
at revision ``round-N`` via ``store.open``); the base model is the config's student. Without
``--round`` the round is, in this order: the one promoted to production (its report PR was merged,
``duo promote``; in the hub store read at the promoted commit), the best evaluated round
(:mod:`pipeline.stats.best`: the highest mean on the decision metric that is not significantly worse
than the best before it), the latest fine-tuned round; rejected rounds are skipped, and one line
says which was chosen and why. Each ``--prompt`` is answered through the chat template, greedy
unless ``infer.do_sample``;
``--output`` copies the adapter folder out.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

from ..artifacts.finetune import adapter_folder
from ..config import Config
from ..errors import DuoError
from ..flags import FORCE, SET, Flag, round_number
from ..stats.best import adapter_round
from ..store import open_store

FLAGS = (
    SET,
    Flag("--round",
         "Round whose adapter to pull (default: the promoted round, else the best evaluated round, "
         "else the latest fine-tuned; rejected rounds skipped).",
         type=round_number,
         metavar="N"),
    FORCE,
    Flag("--prompt", "A prompt to answer with the pulled adapter; repeatable (the variable: one per line).",
         kind="list"),
    Flag("--output", "Also copy the adapter folder here."),
    Flag("--max-new-tokens", "Tokens to generate at most (default: infer.max_new_tokens).", type=int),
)


def generate(cfg: Config, adapter: Path, prompts: list[str], max_new_tokens: int | None = None) -> list[str]:
    """Answers of base + adapter to ``prompts`` (each sent as one user turn through the chat template)."""
    from ..model.generation import generate_transformers
    from ..model.student import load_tokenizer, resolve_base

    if max_new_tokens:
        infer = dataclasses.replace(cfg.infer, max_new_tokens=int(max_new_tokens))
        cfg = dataclasses.replace(cfg, infer=infer)
    base = resolve_base(cfg)
    tokenizer = load_tokenizer(cfg, base, for_generation=True)
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in prompts]
    # The same loader and decoding as `duo infer`: PeftModel.from_pretrained on the base, greedy by default.
    answers, _, _ = generate_transformers(cfg, base, adapter, texts, tokenizer)
    return [a.text for a in answers]


def command(cfg: Config, args: argparse.Namespace) -> int:
    store = open_store(cfg)
    round_no, commit = args.round, None
    if round_no is None:
        round_no, commit, why = adapter_round(cfg, store)
        print(f"round {round_no}: {why}")
    adapter = adapter_folder(store, int(round_no), commit)
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
