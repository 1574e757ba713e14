"""``duo serve`` without a GPU (issue 21, 1): the vLLM command it would run (the base with the round's LoRA under
the served name, or the base itself named so for round 0), llama-server's, and the one line when vLLM is missing."""

from __future__ import annotations

import importlib.util
import json

import pytest

from pipeline.cli import main
from pipeline.stages import serve


def test_vllm_command_serves_the_lora_under_the_served_name(tmp_path):
    adapter = tmp_path / "round-2" / "finetune" / "adapter"
    cmd = serve.vllm_command("HuggingFaceTB/SmolLM2-135M-Instruct", adapter, "support-bot", "0.0.0.0", 8000,
                             revision="abc123", max_lora_rank=16, parallel=None)
    assert cmd[cmd.index("serve"):] == [
        "serve", "HuggingFaceTB/SmolLM2-135M-Instruct", "--host", "0.0.0.0", "--port", "8000",
        "--revision", "abc123", "--enable-lora", "--max-lora-rank", "16",
        "--lora-modules", f"support-bot={adapter}"]
    assert "--served-model-name" not in cmd  # the LoRA answers to the name; the base keeps its own


def test_vllm_command_for_the_base_names_it_and_caps_the_batch():
    cmd = serve.vllm_command("/models/base", None, "support-bot", "127.0.0.1", 8001, revision=None,
                             max_lora_rank=None, parallel=8)
    assert cmd[cmd.index("serve"):] == ["serve", "/models/base", "--host", "127.0.0.1", "--port", "8001",
                                        "--served-model-name", "support-bot", "--max-num-seqs", "8"]
    assert "--enable-lora" not in cmd


def test_llamacpp_command_names_the_alias_slots_and_threads(tmp_path):
    cmd = serve.llamacpp_command(tmp_path / "m.gguf", "support-bot", "127.0.0.1", 9000, parallel=None, threads=2,
                                 ctx_size=None)
    args = dict(zip(cmd[1::2], cmd[2::2]))
    assert args["--model"] == str(tmp_path / "m.gguf") and args["--alias"] == "support-bot"
    assert args["--parallel"] == "4" and args["--threads"] == "2" and args["--ctx-size"] == "0"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_serve_with_vllm_missing_is_one_line_naming_the_install(tmp_path, capsys):
    config = tmp_path / "duo.yaml"
    config.write_text(json.dumps({"task": {"name": "t"}, "data": {"source": "x.jsonl"},
                                  "student": {"model": "HuggingFaceTB/SmolLM2-135M-Instruct"}}))
    assert main(["serve", str(config), "--engine", "vllm"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "vLLM is not installed: pip install vllm" in err and "--engine llamacpp" in err
    assert not (tmp_path / "exports").exists()  # nothing started or exported


def test_serve_refuses_two_round_choices(tmp_path, capsys):
    config = tmp_path / "duo.yaml"
    config.write_text(json.dumps({"task": {"name": "t"}, "data": {"source": "x.jsonl"},
                                  "student": {"model": "HuggingFaceTB/SmolLM2-135M-Instruct"}}))
    assert main(["serve", str(config), "--base", "--round", "2"]) == 1
    assert "give one of --round N, --promoted or --base" in capsys.readouterr().err
