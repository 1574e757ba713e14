"""``duo infer``: the student answers every test prompt.

Input: ``prepare/test.jsonl`` and, for round N >= 1, ``round-N/finetune/adapter``. Round 0 is the
untuned baseline: the base student with no adapter, on the same prompts, so every later round can be
compared with it. Output: artifact ``round-N/infer`` with ``answers.jsonl``: ``id``,
``instruction``, ``reference`` (the service LLM's answer), ``category``, ``system`` (the prompt's
system turn or null), ``context`` (earlier turns), ``answer``, ``sample`` (0..
``infer.samples_per_prompt`` - 1), ``finish_reason`` (``stop``: the student ended its answer;
``length``: cut at ``infer.max_new_tokens``), ``model``, ``adapter`` (null for round 0), ``params``.
The manifest counts ``truncated_answers`` and ``empty_answers``. A round trained with several
``finetune.seeds`` answers with each seed's adapter: its rows carry ``seed`` too (``sample`` counts
per seed), one seed's rows after the other's. Generation: :mod:`pipeline.model.generation`.
"""

from __future__ import annotations

import argparse

from ..artifacts import ARTIFACTS, reusable
from ..artifacts.finetune import seed_adapters
from ..config import Config
from ..data.chat import asked_fields, prompt_messages
from ..data.structured import template_kwargs
from ..errors import DuoError
from ..flags import COMMON
from ..manifest import Manifest
from ..model import constrain
from ..model.generation import TRUNCATED, choose_backend, generate_each, generation_params
from ..model.launch import PROCESSES, is_main, relaunch, wanted, world_size
from ..records import read_jsonl, write_jsonl
from ..stats.task_kind import round_kind
from ..store import BASELINE_ROUND, Store, artifact_name, open_store
from .common import publish, round_arg

FLAGS = (*COMMON, PROCESSES)
ARTIFACT = ARTIFACTS["infer"]


def test_rows(cfg: Config, store: Store) -> list[dict]:
    """The test prompts (``infer.max_test_samples`` first ones when set), checked."""
    path = store.open("prepare") / "test.jsonl"
    rows = read_jsonl(path)
    if cfg.infer.max_test_samples:
        rows = rows[:cfg.infer.max_test_samples]
    for n, row in enumerate(rows, 1):
        if not isinstance(row.get("instruction"), str) or "id" not in row:
            raise DuoError(f"{path}: row {n} needs 'id' and a string 'instruction'")
    if not rows:
        raise DuoError(f"{path}: no test prompts to answer")
    return rows


def _samples(cfg: Config) -> int:
    k = int(cfg.infer.samples_per_prompt)
    if k > 1 and not cfg.infer.do_sample:
        raise DuoError(f"infer.samples_per_prompt is {k} but infer.do_sample is false: "
                       f"greedy decoding gives the same answer {k} times; "
                       "set infer.do_sample: true (LlamaDuo samples 4 at temperature 0.8)")
    return k


def _rows(cfg: Config, rows: list[dict], answers: list, k: int, *, seed: int | None, adapter: str | None,
          params: dict) -> list[dict]:
    """``answers.jsonl`` rows of one adapter's ``k`` answers to each test prompt; ``seed`` only when the
    round trained several."""
    return [
        {
            "id": r["id"],
            "instruction": r["instruction"],
            "reference": r.get("response"),
            "category": r.get("category"),
            **asked_fields(r),
            **{key: r[key] for key in ("tools", "response_format") if r.get(key)},  # structured rows
            "answer": answers[i * k + j].text,
            "sample": j,
            **({} if seed is None else {"seed": seed}),
            "finish_reason": answers[i * k + j].finish_reason,
            "model": cfg.student.model,
            "adapter": adapter,
            "params": params,
        }
        for i, r in enumerate(rows)
        for j in range(k)
    ]


def run(cfg: Config, store: Store, round_no: int | None = None, *, force: bool = False) -> Manifest:
    """Answer the test prompts with round ``round_no``'s adapter (round 0: the base
    model); skip when unchanged."""
    round_no = 1 if round_no is None else int(round_no)
    ins = ARTIFACT.inputs(cfg, store, round_no)
    if (old := reusable(store, ins, force=force)) is not None:
        return old
    rows, k = test_rows(cfg, store), _samples(cfg)
    ft_name = artifact_name("finetune", round_no) if round_no > BASELINE_ROUND else None
    adapters = seed_adapters(store, round_no) if ft_name else [(None, None)]

    from ..model.student import load_tokenizer, resolve_base

    backend = choose_backend(cfg)
    base = resolve_base(cfg)
    tokenizer = load_tokenizer(cfg, base, for_generation=True)
    texts = [tokenizer.apply_chat_template(prompt_messages(r), tokenize=False, add_generation_prompt=True,
                                           **template_kwargs(r))
             for r in rows]
    params = generation_params(cfg, backend)
    schemas, constrained = constrain.plan(cfg, round_kind(cfg, store)[0], rows, backend)  # infer.constrain
    if schemas is not None:
        params["constrained"] = "json_schema"
    manifest = ins.start()
    asked = None if schemas is None else [s for s in schemas for _ in range(k)]
    results = generate_each(cfg, base, [a for _, a in adapters], [t for t in texts for _ in range(k)],
                            tokenizer, backend, asked)
    if results is None:
        # A launched process other than the main one: its share of answers went to the main one.
        return manifest
    out, answers, generated, seconds = [], [], 0, 0.0
    for (seed, _), (mine, tokens, took) in zip(adapters, results):
        out += _rows(cfg, rows, mine, k, seed=seed, adapter=ft_name, params=params)
        answers, generated, seconds = answers + mine, generated + tokens, seconds + took
    with store.write(ins.name) as folder:
        write_jsonl(folder / "answers.jsonl", out)
        manifest.counts = {
            "prompts": len(rows),
            "answers": len(out),
            "samples_per_prompt": k,
            "empty_answers": sum(1 for a in answers if not a.text),
            "generated_tokens": generated,
            "truncated_answers": sum(1 for a in answers if a.finish_reason == TRUNCATED),
        }
        manifest.models = {"student": cfg.student.model, "base_path": base, "adapter": ft_name}
        manifest.extra = {
            "params": params,
            "generation_seconds": round(seconds, 3),
            "baseline": ft_name is None,
            "tokens_per_s": round(generated / seconds, 2) if seconds else None,
            "num_processes": world_size(),
            "constrained": constrained,
        }
        if backend == "llamacpp":
            from ..model.llamacpp import gguf_type

            manifest.extra["gguf_type"] = gguf_type()
        if len(adapters) > 1:
            manifest.extra["seeds"] = [seed for seed, _ in adapters]
        manifest.finish(folder).write(folder)
    return manifest


def command(cfg: Config, args: argparse.Namespace) -> int:
    store = open_store(cfg)
    round_no = round_arg(args, store)
    # Not under vLLM: it spreads one model over GPUs itself (tensor parallel).
    if (wanted(cfg.infer.launch, args)
            and reusable(store, ARTIFACT.inputs(cfg, store, round_no), force=args.force) is None
            and choose_backend(cfg) == "transformers"):
        return relaunch(cfg, args, "infer", cfg.infer.launch, round_no)
    m = run(cfg, store, round_no, force=args.force)
    if not is_main():
        return 0
    what = "the untuned base student" if round_no == BASELINE_ROUND else f"round {round_no}'s adapter"
    summary = (f"infer round {round_no} ({what}): {m.counts.get('answers')} answers "
               f"({m.counts.get('empty_answers')} empty, "
               f"{m.counts.get('truncated_answers', 'unknown')} cut at max_new_tokens), "
               f"{m.extra.get('tokens_per_s')} tokens/s with "
               f"{m.extra.get('params', {}).get('backend')}")
    publish(store, m.artifact, summary, title=f"infer, round {round_no}")
    return 0
