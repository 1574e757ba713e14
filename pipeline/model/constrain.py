"""Constrained decoding of a ``json`` task's answers (``infer.constrain``): the student can only write text
that parses as JSON valid against the task's schema (``task.schema``, else the logged ``response_format`` schema;
none: any JSON value).

- ``llamacpp`` backend: llama-server's own structured output (the ``json_schema`` field of
  ``/v1/completions``, turned into a grammar by llama.cpp; its ``response_format`` is honoured on chat completions only).
- ``transformers`` backend: a logits processor from ``llguidance`` (the ``structured`` extra: one wheel, no
  dependencies; the grammar engine vLLM and llama.cpp use too) masks every token that would break the schema.
- ``vllm``: not wired here; ``auto`` leaves its answers unconstrained and says so.

``auto`` (the default) constrains a json task wherever the backend can, as a deployment that passes the logged
``response_format`` on to llama-server or vLLM would; ``true`` insists (an error where it cannot); ``false``
measures the student's own JSON. An answer cut at ``infer.max_new_tokens`` is still invalid: the grammar
forbids wrong tokens, not running out of them.
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache

from ..config import Config
from ..errors import DuoError

ANY_JSON: dict = {}  # a json task with no schema at all: any JSON value


def has_llguidance() -> bool:
    return importlib.util.find_spec("llguidance") is not None


def _mode(cfg: Config) -> str:
    value = cfg.infer.constrain
    return "auto" if value == "auto" else ("true" if value is True else "false")


def plan(cfg: Config, kind: str, rows: list[dict], backend: str) -> tuple[list[dict] | None, dict]:
    """(the schema each of ``rows`` is constrained to, or None: unconstrained; what the manifest records:
    ``{"constrained", "why"}``). ``kind``: the task's kind (``task.kind`` or prepare's detection)."""
    from ..data.structured import row_schema, task_schema

    mode = _mode(cfg)

    def no(why: str) -> tuple[None, dict]:
        if mode == "true":
            raise DuoError(f"infer.constrain is true but {why}; set it to auto or false")
        return None, {"constrained": False, "why": why}

    if mode == "false":
        return None, {"constrained": False, "why": "infer.constrain is false"}
    if kind != "json":
        return no(f"the task's kind is {kind} (only a json task's answers are constrained)")
    if backend == "vllm":
        return no("the vllm backend's structured output is not wired in (llamacpp and transformers are)")
    if backend == "transformers" and not has_llguidance():
        return no("the transformers backend needs llguidance (pip install llguidance: the structured extra)")
    common = task_schema(cfg, rows)
    schemas = [row_schema(r, common) or ANY_JSON for r in rows]
    what = "the task's schema" if common is not None else "each row's logged schema or any JSON"
    return schemas, {"constrained": True, "why": f"{backend}: answers constrained to {what}",
                     "backend": backend}


# ------------------------------------------------------------------------------ transformers (llguidance)


@lru_cache(maxsize=4)
def _ll_tokenizer(tokenizer, n_vocab: int, eos: tuple):
    import llguidance.hf

    return llguidance.hf.from_tokenizer(tokenizer, n_vocab=n_vocab, eos_token=list(eos))


@lru_cache(maxsize=64)
def _grammar(schema_text: str) -> str:
    import llguidance

    # JSON as json.dumps writes it, the form of the targets duo trains on (", " and ": ", no other whitespace):
    # no tokens spent on indentation; keywords llguidance does not implement (e.g. "format") are ignored
    options = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": ", "lenient": True}
    return llguidance.LLMatcher.grammar_from_json_schema(schema_text, defaults=options)


def logits_processor(tokenizer, model, schemas: list[dict], stop_ids: list[int]):
    """A ``LogitsProcessorList`` for one ``generate()`` batch whose row ``i`` must follow ``schemas[i]``."""
    import llguidance
    import numpy as np
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    head = model.get_output_embeddings()
    n_vocab = int(getattr(head, "out_features", 0) or len(tokenizer))
    lltok = _ll_tokenizer(tokenizer, n_vocab, tuple(stop_ids))
    matchers = []
    for schema in schemas:
        matcher = llguidance.LLMatcher(lltok, _grammar(json.dumps(schema, sort_keys=True)), log_level=0)
        if matcher.is_error():
            raise DuoError(f"infer.constrain: llguidance cannot use the task's schema: {matcher.get_error()}")
        matchers.append(matcher)

    class SchemaMask(LogitsProcessor):
        """Each step: feed every row's matcher the token just chosen, then let through only the tokens its
        grammar allows; once the grammar is complete (the matcher stops), only an end token."""

        def __init__(self):
            self.started = False

        def __call__(self, input_ids, scores):
            if self.started:
                for matcher, token in zip(matchers, input_ids[:, -1].tolist()):
                    if not matcher.is_stopped():
                        matcher.consume_token(token)
            self.started = True
            for i, matcher in enumerate(matchers):
                if matcher.is_error():  # cannot happen while every token is masked; never block generation
                    continue
                allowed = np.zeros(scores.shape[1], dtype=bool)
                if matcher.is_stopped():
                    allowed[[t for t in stop_ids if t < len(allowed)]] = True
                else:
                    bits = np.unpackbits(np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8),
                                         bitorder="little")
                    n = min(len(bits), scores.shape[1])
                    allowed[:n] = bits[:n].astype(bool)
                scores[i] = scores[i].masked_fill(~torch.from_numpy(allowed).to(scores.device), float("-inf"))
            return scores

    return LogitsProcessorList([SchemaMask()])
