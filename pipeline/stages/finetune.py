"""``duo finetune``: LoRA/QLoRA fine-tune the student on the round's training
set with TRL's SFTTrainer.

Input: ``prepare`` and every ``round-k/synthesize`` (k <= N). Output: artifact ``round-N/finetune``
with ``adapter/`` (peft adapter + tokenizer files), ``README.md`` (model card) and
``train_log.jsonl`` (one line per logged step: ``step``, ``loss``, ``learning_rate``, ...). Keys
under ``finetune.lora`` / ``finetune.sft`` are peft's ``LoraConfig`` and TRL's ``SFTConfig`` own
names, so an alignment-handbook recipe passes straight through. With ``finetune.seeds: [s1, s2, ...]``
the round trains one adapter per seed on the same rows: s1's is ``adapter/``, the others'
``seeds/<seed>/adapter/`` (with ``seeds/<seed>/train_log.jsonl``), and the manifest's ``extra.seeds``
lists each run (seed, adapter folder, first and last loss, steps, seconds).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

from .. import tracking
from ..artifacts import ARTIFACTS, reusable
from ..artifacts.finetune import adapter_location, cut_counts, cut_warning
from ..artifacts.synthesize import no_new_rows, refused_all
from ..config import Config
from ..data.reviewed import drop_reviewed
from ..data.trainset import length_counts, same_columns, training_rows
from ..data.trainset import prompt_completion as to_prompt_completion
from ..errors import DuoError
from ..flags import COMMON
from ..manifest import Manifest
from ..model.launch import PROCESSES, is_main, rank, relaunch, wanted
from ..model.sft_recipe import build as build_recipe
from ..model.sft_recipe import with_max_length
from ..model.training import run_summary, seed_folder, seeded, train, train_extra_seed, train_stats
from ..store import Store, open_store
from ..templating import render_file
from .common import publish, round_arg

FLAGS = (*COMMON, PROCESSES)

ARTIFACT = ARTIFACTS["finetune"]


def _select(rows: list[dict], limit: int | None, seed: int) -> list[dict]:
    """At most ``limit`` rows, a seeded sample that keeps their order (synthetic rows
    come last, so no head())."""
    if not limit or len(rows) <= limit:
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[i] for i in keep]


def _name_base(adapter: Path, model_id: str) -> None:
    """Point ``adapter_config.json`` at the model our local GGUF conversion stands
    for, so it loads elsewhere.

    Done after saving: set before, peft would try to fetch that model's config
    from the Hub while saving.
    """
    path = adapter / "adapter_config.json"
    conf = json.loads(path.read_text(encoding="utf-8"))
    conf["base_model_name_or_path"] = model_id
    path.write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def model_card(cfg: Config, **values) -> str:
    """The adapter's ``README.md`` from ``templates/finetune_card.md.j2``."""
    import yaml

    model = cfg.student.model
    is_hub = not cfg.resolve(model).exists() and model.count("/") == 1
    gguf = None
    if cfg.student.gguf_package or cfg.student.gguf_file:
        gguf = "/".join(x for x in (cfg.student.gguf_package, cfg.student.gguf_file) if x)
    metadata = {"base_model": model, "library_name": "peft", "pipeline_tag": "text-generation",
                 "tags": ["duo", "llamaduo", "lora", "sft", "trl"]}
    return render_file("finetune_card.md.j2", metadata_yaml=yaml.safe_dump(metadata, sort_keys=False),
                       task_name=cfg.task.name, task_description=cfg.task.description, base_model=model,
                       base_model_url=f"https://huggingface.co/{model}" if is_hub else "",
                       base_revision=cfg.student.revision, gguf=gguf, **values)


def training_pairs(cfg: Config, store: Store, round_no: int, seed: int) -> tuple[list[dict], int, int, dict]:
    """(prompt/completion pairs to train on, all training rows, synthetic rows among them, rows people's
    labels dropped: ``data.reviewed``)."""
    rows, reviewed = drop_reviewed(store, round_no, training_rows(store, round_no))  # people's bad labels
    synthetic = sum(1 for r in rows if "generator" in r or "seed_id" in r)
    chosen = _select(rows, cfg.finetune.max_train_samples, seed)
    pairs = same_columns([to_prompt_completion(r, f"training row {r.get('id', i)} (round {round_no})")
                          for i, r in enumerate(chosen)])
    if not pairs:
        raise DuoError(f"finetune round {round_no}: the training set is empty "
                       "(prepare/train.jsonl has no rows)")
    return pairs, len(rows), synthetic, reviewed


def _tokenizer(cfg: Config):
    """(base model path, its tokenizer for training)."""
    from ..model.student import load_tokenizer, resolve_base

    base = resolve_base(cfg)
    return base, load_tokenizer(cfg, base, for_generation=False)


def run(cfg: Config, store: Store, round_no: int | None = None, *, force: bool = False) -> Manifest:
    """Fine-tune round ``round_no`` (default 1); skip when the artifact matches this
    config and these inputs."""
    round_no = 1 if round_no is None else int(round_no)
    if round_no < 1:
        raise DuoError("finetune: round 0 is the untuned baseline; there is nothing to train for it")
    if not store.exists("prepare"):
        raise store.missing("prepare", "finetune")
    # The same rows as round N-1: another GPU run would train on nothing new.
    if no_new_rows(store, round_no) and refused_all(store, round_no):
        raise DuoError(f"round {round_no}: the spend cap "
                       f"(budget.max_spend_usd=${cfg.budget.max_spend_usd:.4f}) refused every "
                       "synthesis request, so there is nothing new to train; raise the budget to go on")
    if no_new_rows(store, round_no):
        raise DuoError(f"round {round_no} adds no training rows over round {round_no - 1} "
                       "(synthesis kept 0): nothing new to train")
    ins = ARTIFACT.inputs(cfg, store, round_no)
    if (old := reusable(store, ins, force=force)) is not None:
        return old
    # Check the recipe (peft's and TRL's own classes read it) before paying for the model and data.
    import torch

    cuda = torch.cuda.is_available()
    per_rank = "" if is_main() else f"-rank{rank()}"
    work = store.root / (f".work-round-{round_no}-finetune" + per_rank)
    recipe = build_recipe(cfg, work / "trainer", cuda=cuda)
    pairs, n_rows, synthetic, reviewed = training_pairs(cfg, store, round_no, int(recipe.sft.seed))
    manifest = ins.start()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log_path = work / "train_log.jsonl"
    base, tokenizer = _tokenizer(cfg)
    cuts = length_counts(pairs, tokenizer, recipe.sft_kwargs.get("max_length"))  # resolves max_length: auto
    recipe = with_max_length(recipe, cuts["max_length"])
    first, *others = cfg.finetune.seeds or [None]  # None: finetune.sft.seed, one adapter
    # The extra seeds first, each saved to the work folder and freed: one model in memory at a time.
    runs = [train_extra_seed(cfg, recipe, pairs, base, tokenizer, work, s, cuda=cuda) for s in others]
    recipe = recipe if first is None else seeded(recipe, first)
    with tracking.training(cfg, round_no, main=is_main()) as report_to:  # TRL's curves into the round's run
        trainer, model, result = train(cfg, recipe, pairs, base, tokenizer, log_path, report_to=report_to)
    # Under accelerate launch only the main process writes the artifact.
    if not trainer.is_world_process_zero():
        shutil.rmtree(work, ignore_errors=True)
        return manifest
    stats = train_stats(trainer, result, model, log_path, cuda)
    # After TRL drops.
    used = len(trainer.train_dataset) if trainer.train_dataset is not None else cuts["rows_used"]
    # The cut counts come early: `duo run` prints a stage's first four counts.
    manifest.counts = {
        "train_rows": used,
        "rows_truncated": cuts["rows_truncated"],
        "rows_dropped_too_long": cuts["rows_dropped_too_long"],
        "max_length": cuts["max_length"],
        "rows_given": len(pairs),
        "prepare_rows": n_rows - synthetic,
        "synthetic_rows": synthetic,
        "steps": stats["steps"],
        "reviewed_bad_dropped": reviewed["bad"],  # synthetic rows people marked bad (data.reviewed)
        "reviewed_near_duplicates_dropped": reviewed["near_duplicate"],
    }
    manifest.models = {"base": cfg.student.model, "base_revision": cfg.student.revision, "base_path": base,
                       "gguf_file": cfg.student.gguf_file}
    manifest.extra = {**stats, "lora": recipe.lora_kwargs, "sft": recipe.sft_kwargs, "lengths": cuts}
    if runs:
        manifest.extra["seeds"] = [run_summary(first, "adapter", stats), *runs]
    with store.write(ins.name) as folder:
        _save(cfg, store, ins.name, folder, trainer, tokenizer, log_path, manifest, model, recipe)
        _save_seeds(cfg, folder, work, tokenizer, runs)
        manifest.finish(folder).write(folder)
    shutil.rmtree(work, ignore_errors=True)
    return manifest


def _save(cfg: Config, store: Store, name: str, folder: Path, trainer, tokenizer, log_path: Path,
          manifest: Manifest, model, recipe) -> None:
    """The adapter, its tokenizer, the train log and the model card into the artifact folder."""
    adapter = folder / "adapter"
    trainer.model.save_pretrained(adapter)
    if cfg.student.gguf_package or cfg.student.gguf_file:
        _name_base(adapter, cfg.student.model)
    tokenizer.padding_side = "left"  # whoever loads the adapter's tokenizer next will batch-generate with it
    tokenizer.save_pretrained(adapter)
    if log_path.is_file():
        shutil.copy(log_path, folder / "train_log.jsonl")
    c, x = manifest.counts, manifest.extra
    ref, revision = adapter_location(store, name)
    card = model_card(cfg,
                      round=manifest.round,
                      prepare_rows=c["prepare_rows"],
                      synthetic_rows=c["synthetic_rows"],
                      train_rows=c["train_rows"],
                      max_train_samples=cfg.finetune.max_train_samples,
                      dtype=str(model.dtype).removeprefix("torch."),
                      quantized=x["quantized"],
                      device=x["device"].upper(),
                      steps=c["steps"],
                      first_loss=x["first_loss"],
                      last_loss=x["last_loss"],
                      seconds_per_step=x["seconds_per_step"],
                      lora=recipe.lora_kwargs,
                      sft=recipe.sft_kwargs,
                      adapter_ref=ref,
                      adapter_revision=revision)
    (folder / "README.md").write_text(card, encoding="utf-8")
    (adapter / "README.md").write_text(card, encoding="utf-8")  # replaces peft's empty stub card


def _save_seeds(cfg: Config, folder: Path, work: Path, tokenizer, runs: list[dict]) -> None:
    """Each extra seed's adapter, with the tokenizer (so it loads on its own), and its train log."""
    for r in runs:
        dest = folder / seed_folder(r["seed"])
        shutil.copytree(work / seed_folder(r["seed"]), dest)
        if cfg.student.gguf_package or cfg.student.gguf_file:
            _name_base(dest / "adapter", cfg.student.model)
        tokenizer.save_pretrained(dest / "adapter")


def _trains(cfg: Config, store: Store, round_no: int, force: bool) -> bool:
    """Would ``run`` train? (Not when it would stop on an error or reuse the artifact:
    one process says so.)"""
    if round_no < 1 or not store.exists("prepare") or no_new_rows(store, round_no):
        return False
    return reusable(store, ARTIFACT.inputs(cfg, store, round_no), force=force) is None


def command(cfg: Config, args: argparse.Namespace) -> int:
    store = open_store(cfg)
    round_no = round_arg(args, store)
    if wanted(cfg.finetune.launch, args) and _trains(cfg, store, round_no, args.force):
        return relaunch(cfg, args, "finetune", cfg.finetune.launch, round_no)
    m = run(cfg, store, round_no, force=args.force)
    if not is_main():  # accelerate launch: the main process reports
        return 0
    adapter_repo, adapter_revision = adapter_location(store, m.artifact)
    c, x = m.counts, m.extra
    if warning := cut_warning(c):
        print(warning)
    truncated, dropped = cut_counts(c)
    summary = (f"finetune round {round_no}: {c.get('train_rows')} rows "
               f"({c.get('synthetic_rows')} synthetic), {c.get('steps')} steps, "
               f"loss {x.get('first_loss')} -> {x.get('last_loss')}, "
               f"{x.get('seconds_per_step')} s/step; "
               f"max_length {c.get('max_length')}: {truncated} rows truncated, {dropped} dropped; "
               f"adapter: {adapter_repo}")
    if runs := x.get("seeds"):
        summary += ("; seeds " + ", ".join(str(r["seed"]) for r in runs) + ": last loss "
                    + ", ".join(str(r["last_loss"]) for r in runs))
    publish(store, m.artifact, summary, title=f"finetune, round {round_no}",
            adapter_repo=adapter_repo, adapter_revision=adapter_revision)
    return 0
