"""``duo pull``: take a round's adapter out of the store and try it.

The adapter comes from ``round-N/finetune`` in the configured store (a local folder, or the Hub repo at revision
``round-N`` via ``store.open``); the base model is the config's student. Without ``--round`` the round is, in this
order: the one promoted to production (its report PR was merged, ``duo promote``; in the hub store read at the
promoted commit), the last round that passed its rule, the latest fine-tuned round; rejected rounds are skipped, and
one line says which was chosen and why. Each ``--prompt`` is answered through the
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
from .store import Store, artifact_name, latest_round, open_store, round_of

FLAGS = COMMON + (
    Flag("--prompt", "A prompt to answer with the pulled adapter; repeatable (the variable: one per line).",
         kind="list"),
    Flag("--output", "Also copy the adapter folder here."),
    Flag("--max-new-tokens", "Tokens to generate at most (default: infer.max_new_tokens).", type=int),
)


def choose_round(store: Store) -> tuple[int, str | None, str]:
    """(round, pinned commit or None, why): promoted, else last passing, else latest; rejected rounds skipped."""
    from .promote import production, promotions, rejected_rounds

    finetuned = sorted(r for r in (round_of(n) for n in store.list("round-") if n.endswith("/finetune"))
                       if r is not None)
    if not finetuned:
        latest_finetuned_round(store)  # raises the one-line "run duo finetune first"
    records = promotions(store)
    prod = production(records)
    if prod is not None and prod["round"] in finetuned:
        pin = f" ({prod['ref']} at {prod['commit'][:12]})" if prod.get("commit") else ""
        return prod["round"], prod.get("commit"), f"promoted to production{pin} when its report PR was merged"
    rejected = rejected_rounds(records)
    usable = [r for r in finetuned if r not in rejected]
    passing = [r for r in usable if _verdict(store, r) == "pass"]
    if passing:
        return passing[-1], None, "the last round that passed its rule (none promoted yet)"
    skipped = f"; rejected in review: {', '.join(map(str, sorted(rejected)))}" if rejected else ""
    return (usable or finetuned)[-1], None, f"the latest fine-tuned round (none promoted or passing{skipped})"


def _verdict(store: Store, round_no: int) -> str | None:
    """Round ``round_no``'s verdict: from the evaluate manifest (no download), else its metrics.json."""
    from .evaluate import read_metrics

    name = artifact_name("evaluate", round_no)
    if not store.exists(name):
        return None
    return (store.manifest(name).extra or {}).get("verdict") or read_metrics(store, round_no, "duo pull")["verdict"]


def latest_finetuned_round(store: Store) -> int:
    """The highest round with a complete finetune artifact; DuoError when there is none."""
    round_no = latest_round(store, "finetune")
    if round_no is None:
        raise DuoError(f"no round has a finetune artifact in the {store.kind} store at {store.root}; "
                       f"run `duo finetune` (or `duo run`) first")
    return round_no


def adapter_folder(store: Store, round_no: int, commit: str | None = None) -> Path:
    """The local folder of round ``round_no``'s adapter (downloaded first from a hub store); with ``commit`` (a
    promoted round in the hub store) the adapter as it was at that model-repo commit, should the branch have moved."""
    name = artifact_name("finetune", round_no)
    if commit and store.kind == "hub":
        from .promote import adapter_commit

        if adapter_commit(store, round_no) != commit:
            return store.hub.snapshot(store.model_repo, "model", commit, None, f"round {round_no}'s promoted adapter")
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
    return [a.text for a in answers]


def command(cfg: Config, args: argparse.Namespace) -> int:
    store = open_store(cfg)
    round_no, commit = args.round, None
    if round_no is None:
        round_no, commit, why = choose_round(store)
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
