"""``duo export``: take a round's adapter to the servers teams run.

``--to merged`` loads the student, applies the adapter and folds it in (peft ``merge_and_unload``),
then writes a plain transformers model (safetensors) with its tokenizer and ``duo_export.json``
(round, adapter commit, base) to ``--output``: any server that loads a Hugging Face model serves it.
``--to vllm`` prints the commands that serve the base model with the adapter in vLLM (the adapter
downloaded at its commit, since ``--lora-modules`` takes no revision) and the OpenAI-client call
that swaps the service LLM for it. ``--to gguf`` writes the merged model as one GGUF file with
llama.cpp's converter (``--quant``: f16 by default; see :mod:`pipeline.model.gguf`), its record
``duo_export.json`` and an Ollama ``Modelfile``; an unchanged adapter reuses the file already
exported; round 0 (``--base``) of a student shipped as GGUF is that file as shipped. The round is
``--round N``, ``--promoted`` (the round in production) or, by default, the one ``duo pull`` would
choose: the promoted round, else the best evaluated round, else the latest fine-tuned round.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..artifacts.finetune import adapter_commit, adapter_folder
from ..config import Config
from ..errors import DuoError
from ..flags import SET, Flag, one_of, round_number
from ..model.generation import vllm_max_lora_rank
from ..store import Store, open_store
from ..templating import render_file
from .common import pick

TARGETS = ("merged", "vllm", "gguf")


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
    Flag("--base",
         "Export the base model, round 0 (with --to gguf: the GGUF the student ships as, unless --quant).",
         kind="switch"),
    Flag("--to", "merged (a merged safetensors model), vllm (print the vLLM command) or gguf (a GGUF "
         "file for llama.cpp/Ollama, with a Modelfile); default merged.",
         type=one_of(*TARGETS), metavar="merged|vllm|gguf"),
    Flag("--quant", "GGUF type for --to gguf: f16 (default), bf16, f32, q8_0 (llama.cpp's converter), or "
         "q4_k_m, q5_k_m, q6_k, q4_0, ... (llama-quantize).", metavar="TYPE"),
    Flag("--output", "Folder for --to merged or gguf "
         "(default: exports/<task>-round-<N>-merged or -<quant> beside the config)."),
    Flag("--name", "Model name the server answers to with --to vllm (default: <task>-round-<N>)."),
)


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
    if sum((args.promoted, args.round is not None, args.base)) > 1:
        raise DuoError("duo export: give one of --round N, --promoted or --base")
    store = open_store(cfg)
    round_no, commit, why = pick(cfg, store, args.round, bool(args.promoted), bool(args.base))
    if commit is None and store.kind == "hub" and round_no > 0:
        commit = adapter_commit(store, round_no)  # name the adapter by commit, not by its movable branch
    print(f"round {round_no}: {why}")
    name = args.name or f"{cfg.task.name}-round-{round_no}"
    if args.to == "gguf":
        return gguf(cfg, store, args, round_no, commit, why)
    if round_no == 0:
        raise DuoError(f"duo export --to {args.to or 'merged'}: round 0 has no adapter; "
                       "serve the base model itself, or use --to gguf")
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


def gguf(cfg: Config, store: Store, args: argparse.Namespace, round_no: int, commit: str | None,
         why: str) -> int:
    from ..model.gguf import round_gguf

    output = Path(args.output).expanduser() if args.output else None
    path, record, reused = round_gguf(cfg, store, round_no, commit, why, quant=args.quant, folder=output)
    what = "the base as shipped" if record.get("shipped") else (
        "the base" if round_no == 0 else f"base {cfg.student.model} + round {round_no}'s adapter, merged")
    how = "reused: same base, adapter and type" if reused else f"exported in {record['export_seconds']:.1f} s"
    print(f"gguf ({record['quant']}, {record['size_bytes'] / 2**20:.1f} MiB, sha256 {record['sha256'][:12]}) "
          f"of {what}: {path} ({how})")
    name = cfg.rollout.student.model or cfg.task.name
    print(f"ollama: ollama create {name} -f {path.parent / 'Modelfile'}")
    return 0
