"""``duo export``: take a round's adapter to the servers teams run.

``--to merged`` loads the student, applies the adapter and folds it in (peft ``merge_and_unload``),
then writes a plain transformers model (safetensors) with its tokenizer and ``duo_export.json``
(round, adapter commit, base) to ``--output``: any server that loads a Hugging Face model serves it.
``--to vllm`` prints the commands that serve the base model with the adapter in vLLM (the adapter
downloaded at its commit, since ``--lora-modules`` takes no revision) and the OpenAI-client call
that swaps the service LLM for it. The round is ``--round N``, ``--promoted`` (the round in
production) or, by default, the one ``duo pull`` would choose: the promoted round, else the best
evaluated round, else the latest fine-tuned round. GGUF is not made here: no maintained
converter installs from PyPI (see docs/actions.md, "Export").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..artifacts.finetune import adapter_commit, adapter_folder
from ..artifacts.promote import production, promotions
from ..config import Config
from ..errors import DuoError
from ..flags import SET, Flag, round_number
from ..model.generation import vllm_max_lora_rank
from ..stats.best import adapter_round
from ..store import Store, open_store
from ..templating import render_file

TARGETS = ("merged", "vllm")


def target(text: str) -> str:
    if text not in TARGETS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected one of {', '.join(TARGETS)}")
    return text


FLAGS = (
    SET,
    Flag("--round",
         "Round whose adapter to export "
         "(default: the promoted round, else the best evaluated round, else the latest fine-tuned).",
         type=round_number,
         metavar="N"),
    Flag("--promoted",
         "Export the round promoted to production (its report PR was merged).",
         kind="switch"),
    Flag("--to", "merged (a merged safetensors model) or vllm (print the vLLM command); default merged.",
         type=target, metavar="merged|vllm"),
    Flag("--output", "Folder for --to merged (default: exports/<task>-round-<N>-merged beside the config)."),
    Flag("--name", "Model name the server answers to with --to vllm (default: <task>-round-<N>)."),
)


def pick(cfg: Config, store: Store, round_no: int | None, promoted: bool) -> tuple[int, str | None, str]:
    """(round, adapter commit or None, why) for the flags given."""
    if promoted:
        prod = production(promotions(store))
        if prod is None:
            raise DuoError("--promoted: no round is promoted "
                           f"in the {store.kind} store at {store.root} "
                           "(merge a round's report PR, or run `duo promote --merged --round N`)")
        return prod["round"], prod.get("commit"), "promoted to production"
    if round_no is not None:
        return int(round_no), None, "asked for with --round"
    return adapter_round(cfg, store)


def merged(cfg: Config, adapter: Path, output: Path, provenance: dict) -> Path:
    """Write base + adapter, merged, to ``output`` (safetensors, tokenizer, ``duo_export.json``)."""
    from peft import PeftModel

    from ..model.student import load_model, load_tokenizer, resolve_base

    base = resolve_base(cfg)
    model = PeftModel.from_pretrained(load_model(cfg, base), str(adapter)).merge_and_unload()
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output, safe_serialization=True)
    load_tokenizer(cfg, base, for_generation=True).save_pretrained(output)
    (output / "duo_export.json").write_text(json.dumps({**provenance, "base_model": cfg.student.model},
                                                       indent=2) + "\n", encoding="utf-8")
    return output


def vllm_text(cfg: Config, store: Store, round_no: int, commit: str | None, name: str) -> str:
    """The vLLM serve command and client snippet for round ``round_no``'s adapter."""
    if store.kind == "hub":
        repo, revision = store.model_repo, commit or adapter_commit(store, round_no)
        config = store.hub.download(repo, "model", "adapter_config.json",
                                    f"round {round_no}'s adapter_config.json",
                                    revision=revision)
        path = f"adapters/{name}"
    else:
        repo, revision = None, None
        folder = adapter_folder(store, round_no)
        config, path = folder / "adapter_config.json", str(folder.resolve())
    max_rank = vllm_max_lora_rank(config)
    module = json.dumps({"name": name, "path": path, "base_model_name": cfg.student.model})
    return render_file("export_vllm.md.j2", round=round_no, repo=repo, revision=revision, path=path,
                       base=cfg.student.model, max_lora_rank=max_rank, module=module, model_name=name)


def command(cfg: Config, args: argparse.Namespace) -> int:
    if args.promoted and args.round is not None:
        raise DuoError("duo export: give --round N or --promoted, not both")
    store = open_store(cfg)
    round_no, commit, why = pick(cfg, store, args.round, bool(args.promoted))
    if commit is None and store.kind == "hub":
        commit = adapter_commit(store, round_no)  # name the adapter by commit, not by its movable branch
    print(f"round {round_no}: {why}")
    name = args.name or f"{cfg.task.name}-round-{round_no}"
    if (args.to or "merged") == "vllm":
        print(vllm_text(cfg, store, round_no, commit, name))
        return 0
    output = Path(args.output).expanduser() if args.output else cfg.resolve(f"exports/{name}-merged")
    if output.exists() and any(output.iterdir()):
        raise DuoError(f"--output {output}: folder exists and is not empty; choose a new or empty folder")
    adapter = adapter_folder(store, round_no, commit)
    provenance = {"round": round_no, "adapter": str(adapter), "adapter_commit": commit, "why": why}
    merged(cfg, adapter, output, provenance)
    print(f"merged model (base {cfg.student.model} + round {round_no}'s adapter) written to {output}")
    return 0
