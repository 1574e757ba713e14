"""``duo infer``: the fine-tuned student answers every test prompt.

Input: ``prepare/test.jsonl`` and ``round-N/finetune/adapter``. Output: artifact ``round-N/infer`` with
``answers.jsonl``: ``id``, ``instruction``, ``reference`` (the service LLM's answer), ``category``, ``answer``,
``model``, ``adapter``, ``params``. Generation is batched with left padding, prompts sorted by length (results
go back in test-set order), greedy unless ``infer.do_sample``. vLLM serves the LoRA adapter when it is installed
and a GPU is here (``infer.backend`` auto or vllm); transformers otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

from .config import Config
from .errors import DuoError
from .finetune import default_round
from .gha import set_output, step_summary
from .manifest import Manifest
from .records import read_jsonl, write_jsonl
from .store import Store, artifact_name, open_store

SEED = 42


def prompt_messages(row: dict) -> list[dict]:
    """The chat turns a test row asks: its ``messages`` without the reference answer, else the instruction."""
    messages = row.get("messages")
    if isinstance(messages, list) and len(messages) >= 2 and messages[-1].get("role") == "assistant":
        return messages[:-1]
    return [{"role": "user", "content": row["instruction"]}]


def generation_params(cfg: Config, backend: str) -> dict:
    """What every answer records about how it was made (sampling knobs only when sampling)."""
    params = {"backend": backend, "max_new_tokens": cfg.infer.max_new_tokens, "do_sample": cfg.infer.do_sample}
    if cfg.infer.do_sample:
        params.update(temperature=cfg.infer.temperature, top_p=cfg.infer.top_p, seed=SEED)
    return params


def choose_backend(cfg: Config) -> str:
    """``vllm`` when asked for (or ``auto``) and usable here, else ``transformers``."""
    wanted = cfg.infer.backend
    if wanted == "transformers":
        return "transformers"
    has_vllm = importlib.util.find_spec("vllm") is not None
    import torch

    cuda = torch.cuda.is_available()
    if has_vllm and cuda:
        return "vllm"
    if wanted == "vllm":
        why = "vllm is not installed" if not has_vllm else "no CUDA GPU is available"
        raise DuoError(f"infer.backend: vllm was asked for but {why}; set infer.backend to auto or transformers")
    return "transformers"


def _length_order(lengths: list[int]) -> list[int]:
    """Indices longest first: similar lengths share a batch (less padding) and an out-of-memory shows up early."""
    return sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))


def generate_transformers(cfg: Config, base: str, adapter: Path, texts: list[str], tokenizer) -> tuple[list, int, float]:
    """(answers in the order of ``texts``, generated tokens, generation seconds) with base + merged LoRA adapter."""
    import torch
    from peft import PeftModel
    from tqdm import tqdm

    from .student import load_model

    model = load_model(cfg, base, for_training=False, quantize=False)
    # Merging folds the LoRA deltas into the weights: same outputs, no adapter overhead per token.
    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.eval()
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    order = _length_order([len(e) for e in encoded])
    eos = model.generation_config.eos_token_id
    stop = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
    kwargs = {"max_new_tokens": cfg.infer.max_new_tokens, "do_sample": cfg.infer.do_sample,
              "pad_token_id": tokenizer.pad_token_id, "eos_token_id": sorted(t for t in stop if t is not None)}
    if cfg.infer.do_sample:
        kwargs.update(temperature=cfg.infer.temperature, top_p=cfg.infer.top_p)
        torch.manual_seed(SEED)
    else:  # the model's generation_config may carry sampling defaults; greedy must not warn about or use them
        kwargs.update(temperature=None, top_p=None, top_k=None)
    answers: list = [None] * len(texts)
    generated = 0
    size = cfg.infer.batch_size
    t0 = time.perf_counter()
    with tqdm(total=len(texts), desc="infer", unit="prompt") as bar, torch.inference_mode():
        for start in range(0, len(order), size):
            idx = order[start:start + size]
            batch = tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, padding=True, return_tensors="pt")
            batch = {k: v.to(model.device) for k, v in batch.items()}
            out = model.generate(**batch, **kwargs)
            new = out[:, batch["input_ids"].shape[1]:]
            for row, i in zip(new.tolist(), idx):
                cut = next((n for n, tok in enumerate(row) if tok in stop), None)
                row = row if cut is None else row[:cut + 1]
                generated += len(row)
                answers[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
            bar.update(len(idx))
    return answers, generated, time.perf_counter() - t0


def generate_vllm(cfg: Config, base: str, adapter: Path, texts: list[str], tokenizer) -> tuple[list, int, float]:
    """(answers, generated tokens, generation seconds) from vLLM serving the LoRA adapter on the base model (GPU only)."""
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    from .student import torch_dtype

    rank = int(json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8")).get("r", 8))
    max_rank = next(r for r in (8, 16, 32, 64, 128, 256, 512) if r >= rank)
    llm = LLM(model=base, tokenizer=str(adapter), enable_lora=True, max_lora_rank=max_rank,
              dtype=str(torch_dtype(cfg)).removeprefix("torch."), seed=SEED)
    sampling = SamplingParams(max_tokens=cfg.infer.max_new_tokens, seed=SEED,
                              temperature=cfg.infer.temperature if cfg.infer.do_sample else 0.0,
                              top_p=cfg.infer.top_p if cfg.infer.do_sample else 1.0)
    t0 = time.perf_counter()
    outs = llm.generate(texts, sampling, lora_request=LoRARequest("adapter", 1, str(adapter)))
    answers = [o.outputs[0].text.strip() for o in outs]
    return answers, sum(len(o.outputs[0].token_ids) for o in outs), time.perf_counter() - t0


def run(cfg: Config, store: Store, round_no: int | None = None, *, force: bool = False) -> Manifest:
    """Answer the test prompts with round ``round_no``'s adapter; skip when unchanged."""
    round_no = int(round_no or 1)
    name = artifact_name("infer", round_no)
    ft_name = artifact_name("finetune", round_no)
    for needed in ("prepare", ft_name):
        if not store.exists(needed):
            raise store.missing(needed, "infer")
    parents = [store.manifest("prepare"), store.manifest(ft_name)]
    config_hash = cfg.section_hash("student", "infer")
    if store.exists(name) and not force:
        old = store.manifest(name)
        if old.config_hash == config_hash and old.parents == [p.as_parent() for p in parents]:
            return old

    test_path = store.open("prepare") / "test.jsonl"
    rows = read_jsonl(test_path)
    if cfg.infer.max_test_samples:
        rows = rows[:cfg.infer.max_test_samples]
    for n, row in enumerate(rows, 1):
        if not isinstance(row.get("instruction"), str) or "id" not in row:
            raise DuoError(f"{test_path}: row {n} needs 'id' and a string 'instruction'")
    if not rows:
        raise DuoError(f"{test_path}: no test prompts to answer")

    from .student import load_tokenizer, resolve_base

    backend = choose_backend(cfg)
    adapter = store.open(ft_name) / "adapter"
    base = resolve_base(cfg)
    tokenizer = load_tokenizer(cfg, base, for_generation=True)
    texts = [tokenizer.apply_chat_template(prompt_messages(r), tokenize=False, add_generation_prompt=True)
             for r in rows]
    params = generation_params(cfg, backend)
    manifest = Manifest.start("infer", name, config_hash, round_no, parents=parents)
    generate = generate_vllm if backend == "vllm" else generate_transformers
    answers, generated, seconds = generate(cfg, base, adapter, texts, tokenizer)
    out = [{"id": r["id"], "instruction": r["instruction"], "reference": r.get("response"),
            "category": r.get("category"), "answer": a, "model": cfg.student.model, "adapter": ft_name,
            "params": params} for r, a in zip(rows, answers)]
    with store.write(name) as folder:
        write_jsonl(folder / "answers.jsonl", out)
        manifest.counts = {"answers": len(out), "empty_answers": sum(1 for a in answers if not a),
                           "generated_tokens": generated}
        manifest.models = {"student": cfg.student.model, "base_path": base, "adapter": ft_name}
        manifest.extra = {"params": params, "generation_seconds": round(seconds, 3),
                          "tokens_per_s": round(generated / seconds, 2) if seconds else None}
        manifest.finish(folder).write(folder)
    return manifest


def command(cfg: Config, args: argparse.Namespace) -> int:
    store = open_store(cfg)
    round_no = default_round(store, args)
    m = run(cfg, store, round_no, force=bool(getattr(args, "force", False)))
    name = artifact_name("infer", round_no)
    line = (f"infer round {round_no}: {m.counts.get('answers')} answers ({m.counts.get('empty_answers')} empty), "
            f"{m.extra.get('tokens_per_s')} tokens/s with {m.extra.get('params', {}).get('backend')}")
    print(line)
    step_summary(f"### infer, round {round_no}\n\n{line}")
    set_output("artifact", name)
    set_output("location", store.describe(name).get("location") or str(store.local_path(name)))
    return 0
