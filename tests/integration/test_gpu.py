"""CUDA-only checks (issue #11): fine-tuning and answering on a GPU, on every GPU of the machine, and vLLM serving
the round's LoRA with tensor parallelism. Marked ``gpu``: the default run skips them, and without CUDA they skip.

Run them on a GPU machine with one command (README, "Benchmarks"):
``python -m pytest -m gpu tests/integration/test_gpu.py -q``
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.records import read_jsonl
from pipeline.store import LocalStore
from tests.model_fixtures import make_prepare, qa_rows

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.fixture(scope="module")
def gpu_model_dir(tmp_path_factory) -> Path:
    """The tiny test model's tokenizer on a 2-layer Llama with 64-wide heads (GPU attention kernels and vLLM want
    a head size of 32 or more; two heads split over two GPUs)."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from tests.tiny_model import build_tokenizer

    folder = tmp_path_factory.mktemp("gpu-model")
    tokenizer = build_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def task(tmp_path: Path, model_dir: Path, **sections) -> tuple[Path, LocalStore]:
    doc = {"task": {"name": "gpu"}, "data": {"source": "unused.jsonl"}, "student": {"model": str(model_dir)},
           "finetune": {"sft": {"max_steps": 30, "learning_rate": 1e-2, "warmup_steps": 0, "max_length": 128,
                                "lr_scheduler_type": "constant", "per_device_train_batch_size": 4}},
           "infer": {"batch_size": 4, "max_new_tokens": 8}, "store": {"path": "store"}}
    for key, value in sections.items():
        doc[key] = {**doc.get(key, {}), **value}
    (tmp_path / "duo.yaml").write_text(yaml.safe_dump(doc))
    store = LocalStore(tmp_path / "store")
    if not store.exists("prepare"):
        make_prepare(store, qa_rows(48), qa_rows(6, seed=1, prefix="e"))
    return tmp_path / "duo.yaml", store


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, gpu_model_dir):
    """One GPU: a round-1 adapter trained for 30 steps (the store is shared by the infer tests below)."""
    folder = tmp_path_factory.mktemp("gpu-task")
    config, store = task(folder, gpu_model_dir)
    assert main(["finetune", str(config), "--round", "1", "--processes", "1"]) == 0
    return folder, store


def test_finetune_on_one_gpu(tuned):
    m = tuned[1].manifest("round-1/finetune")
    assert m.extra["device"] == "cuda" and m.extra["num_processes"] == 1
    assert m.extra["peak_gpu_mb"] > 0 and m.extra["last_loss"] < m.extra["first_loss"]


@pytest.mark.skipif(GPUS < 2, reason="needs 2 or more GPUs")
def test_finetune_on_every_gpu_writes_one_artifact(tmp_path, gpu_model_dir, capfd):
    config, store = task(tmp_path, gpu_model_dir)
    assert main(["finetune", str(config), "--round", "1", "--processes", str(GPUS)]) == 0
    out = capfd.readouterr().out
    m = store.manifest("round-1/finetune")
    assert m.extra["num_processes"] == GPUS and m.extra["device"] == "cuda"
    assert out.count("finetune round 1:") == 1 and store.list("round-1") == ["round-1/finetune"]


def test_transformers_infer_on_gpu_applies_the_adapter(tuned, gpu_model_dir):
    folder, store = tuned
    config, _ = task(folder, gpu_model_dir, infer={"backend": "transformers"})
    assert main(["infer", str(config), "--round", "1", "--force"]) == 0
    answers = read_jsonl(store.open("round-1/infer") / "answers.jsonl")
    assert len(answers) == 6 and all(a["answer"].startswith("The answer") for a in answers), answers


@pytest.mark.skipif(GPUS < 2, reason="needs 2 or more GPUs")
def test_transformers_infer_sharded_over_gpus_matches_one_gpu(tuned, gpu_model_dir):
    folder, store = tuned
    config, _ = task(folder, gpu_model_dir, infer={"backend": "transformers"})
    assert main(["infer", str(config), "--round", "1", "--force"]) == 0
    one = [a["answer"] for a in read_jsonl(store.open("round-1/infer") / "answers.jsonl")]
    assert main(["infer", str(config), "--round", "1", "--force", "--processes", "2"]) == 0
    assert store.manifest("round-1/infer").extra["num_processes"] == 2
    assert [a["answer"] for a in read_jsonl(store.open("round-1/infer") / "answers.jsonl")] == one


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")
def test_vllm_serves_the_lora_with_tensor_parallelism(tuned, gpu_model_dir):
    folder, store = tuned
    tp = 2 if GPUS >= 2 else 1
    config, _ = task(folder, gpu_model_dir, infer={"backend": "vllm", "tensor_parallel_size": tp})
    # A fresh process: vLLM wants the GPU memory this one's earlier tests keep cached.
    subprocess.run([sys.executable, "-m", "pipeline", "infer", str(config), "--round", "1", "--force"], check=True)
    m = store.manifest("round-1/infer")
    answers = read_jsonl(store.open("round-1/infer") / "answers.jsonl")
    assert m.extra["params"]["backend"] == "vllm" and len(answers) == 6
    assert all(a["answer"].startswith("The answer") for a in answers), answers  # the LoRA is applied
    reasons = [a["finish_reason"] for a in answers]  # vLLM's own word for why each answer stopped
    assert set(reasons) <= {"stop", "length"} and m.counts["truncated_answers"] == reasons.count("length")
