"""A tiny chat model built from scratch, for tests: a 512-token byte-level BPE and a 2-layer Llama.

It stands in for ``student.model`` wherever a test needs a real model that trains in a tenth of a second per step.
Run ``python -m tests.tiny_model OUT_DIR`` to write one to a folder (the act end-to-end and ``duo run`` tests do).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 512

_SUBJECTS = ["the model", "a student", "the teacher", "our team", "the service", "a small robot", "the judge",
             "my friend", "the pipeline", "this answer"]
_VERBS = ["explains", "writes", "answers", "checks", "summarizes", "translates", "lists", "describes", "compares",
          "improves"]
_OBJECTS = ["the question", "a short poem", "three facts about water", "the capital of France", "a recipe for soup",
            "the plan", "two numbers", "a list of colors", "the history of Rome", "an email to a customer"]
_TAILS = ["quickly.", "in one sentence.", "with care.", "step by step.", "for a child.", "politely.", "again.",
          "in plain words.", "before lunch.", "without errors."]


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    """``n`` generated sentences plus chat-style lines: enough text for a 512-token BPE."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        sentence = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}"
        lines.append(sentence[0].upper() + sentence[1:])
        lines.append(f"Question: what is {rng.randint(0, 99)} plus {rng.randint(0, 99)}? Answer: {rng.randint(0, 198)}")
    lines += ["user", "assistant", "system", "You are a helpful assistant."]
    return lines


def build_tokenizer(seed: int = 0):
    """A byte-level BPE (any text encodes) with ChatML special tokens, as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(seed=seed), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None, chat_template=CHATML, model_max_length=2048)


def build_tiny_model(folder: str | Path, seed: int = 0) -> Path:
    """Write a tokenizer and a randomly initialised 2-layer LlamaForCausalLM to ``folder``; returns the folder."""
    return save_tiny_llama(folder, build_tokenizer(seed), seed, bos_token_id=None)


def save_tiny_llama(folder: str | Path, tokenizer, seed: int = 0, **config) -> Path:
    """Save ``tokenizer`` and a randomly initialised 2-layer LlamaForCausalLM sized to it in ``folder``;
    ``config`` overrides LlamaConfig's fields (``initializer_range``, ``bos_token_id``)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = LlamaConfig(**{
        "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048,
        "tie_word_embeddings": True, "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id, **config})
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m tests.tiny_model OUT_DIR", file=sys.stderr)
        raise SystemExit(2)
    print(build_tiny_model(sys.argv[1]))
