"""``duo export`` (issue 12): ``--to merged`` writes a plain transformers model (safetensors, tokenizer) that
``AutoModelForCausalLM`` loads without peft and that answers greedily exactly as base + adapter does."""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.stages import finetune
from pipeline.store import LocalStore
from tests.integration.test_pull import write_config
from tests.model_fixtures import make_prepare, qa_rows

PROMPTS = ["What is 3 plus 4?", "What is 10 plus 2?", "Say hello."]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    base = tmp_path_factory.mktemp("export")
    config = write_config(base, tiny_model_dir, finetune={"sft": {
        "max_steps": 12, "learning_rate": 1e-2, "warmup_steps": 0, "lr_scheduler_type": "constant",
        "per_device_train_batch_size": 4, "max_length": 128}})
    store = LocalStore(base / "store")
    make_prepare(store, qa_rows(24), qa_rows(4, seed=1, prefix="e"))
    finetune.run(load_config(config), store, 1)
    return config, store


def greedy(model, tokenizer, prompts: list[str]) -> list[list[int]]:
    import torch

    out = []
    for prompt in prompts:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        ids = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=10, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        out.append(gen[0, ids["input_ids"].shape[1]:].tolist())
    return out


def test_merged_export_generates_like_base_plus_adapter(trained, tiny_model_dir, tmp_path, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config, store = trained
    out_dir = tmp_path / "merged"
    assert main(["export", str(config), "--round", "1", "--to", "merged", "--output", str(out_dir)]) == 0
    assert "round 1: asked for with --round" in capsys.readouterr().out
    assert (out_dir / "model.safetensors").is_file() and not (out_dir / "adapter_config.json").exists()
    assert json.loads((out_dir / "duo_export.json").read_text())["round"] == 1

    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    merged = AutoModelForCausalLM.from_pretrained(out_dir).eval()
    adapter = store.open("round-1/finetune") / "adapter"
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(adapter)).eval()
    assert greedy(merged, tokenizer, PROMPTS) == greedy(reference, tokenizer, PROMPTS)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    assert greedy(base, tokenizer, PROMPTS) != greedy(merged, tokenizer, PROMPTS)  # the adapter is in it


def test_export_refuses_a_non_empty_output_and_prints_vllm_for_a_local_store(trained, tmp_path, capsys):
    config, _ = trained
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    assert main(["export", str(config), "--round", "1", "--output", str(tmp_path / "busy")]) == 1
    assert "folder exists and is not empty" in capsys.readouterr().err
    assert main(["export", str(config), "--to", "vllm"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("round 1: the latest fine-tuned round")
    assert "hf download" not in out and "--enable-lora --max-lora-rank 8 --lora-modules" in out
    module = json.loads(out.split("--lora-modules '", 1)[1].split("'", 1)[0])
    assert module["name"] == "tiny-round-1" and module["path"].endswith("round-1/finetune/adapter")
