"""Issue #13: OpenAI chat logs with system prompts and a multi-turn row, through prepare -> finetune (tiny model)
-> infer, and into the judge prompts. The system prompt and earlier turns must reach every step."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.artifacts.infer import read_answers
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.data.chat import prompt_messages
from pipeline.data.trainset import auto_max_length, prompt_completion, token_lengths, training_rows
from pipeline.judging.absolute import plan_absolute
from pipeline.judging.pairwise import plan_pairwise
from pipeline.model.generation import generate_transformers
from pipeline.model.sft_recipe import build, with_max_length
from pipeline.model.student import load_tokenizer
from pipeline.records import read_jsonl
from pipeline.store import open_store

CHAT_LOGS = Path(__file__).resolve().parent.parent / "data" / "chat_logs.jsonl"
BANK = "You are Acme Bank's support assistant. Answer in one short sentence and end with: Anything else?"
FRENCH = "You are a translator. Reply with the French translation only."
MULTI = "cov-000009"  # line 9: two user turns; with test size 4 and seed 1 it is a test row


@pytest.fixture(scope="module")
def chat_round(tmp_path_factory, tiny_model_dir):
    """prepare, finetune (max_length: auto) and infer round 1 on the chat logs, through the CLI."""
    base = tmp_path_factory.mktemp("chat-logs")
    doc = {"task": {"name": "bank"}, "data": {"source": str(CHAT_LOGS), "test": {"size": 4, "seed": 1}},
           "student": {"model": str(tiny_model_dir)},
           "finetune": {"sft": {"max_steps": 4, "learning_rate": 1e-2, "per_device_train_batch_size": 4,
                                "warmup_steps": 0, "max_length": "auto"}},
           "infer": {"batch_size": 4, "max_new_tokens": 6}, "store": {"path": str(base / "store")}}
    path = base / "duo.yaml"
    path.write_text(yaml.safe_dump(doc))
    for verb in (["prepare"], ["finetune", "--round", "1"], ["infer", "--round", "1"]):
        assert main([verb[0], str(path), *verb[1:]]) == 0, verb
    cfg = load_config(path)
    return cfg, open_store(cfg), path


def test_prepare_keeps_the_system_prompt_on_train_and_test_rows(chat_round):
    _, store, _ = chat_round
    folder = store.open("prepare")
    train, test = read_jsonl(folder / "train.jsonl"), read_jsonl(folder / "test.jsonl")
    assert (len(train), len(test)) == (9, 4) and MULTI in {r["id"] for r in test}
    for row in train + test:
        assert row["system"] in (BANK, FRENCH)
        assert row["messages"][0] == {"role": "system", "content": row["system"]}


def test_training_text_has_the_system_prompt_and_only_the_final_answer_is_learnt(chat_round):
    cfg, store, _ = chat_round
    tokenizer = load_tokenizer(cfg, str(cfg.student.model), for_generation=False)
    rows = training_rows(store, 1) + read_jsonl(store.open("prepare") / "test.jsonl")
    pairs = {r["id"]: prompt_completion(r, r["id"]) for r in rows}
    for pair in pairs.values():
        text = tokenizer.apply_chat_template(pair["prompt"] + pair["completion"], tokenize=False)
        assert text.startswith("<|im_start|>system\n") and ("\n" + BANK in text or "\n" + FRENCH in text)
    multi = tokenizer.apply_chat_template(pairs[MULTI]["prompt"], tokenize=False, add_generation_prompt=True)
    assert multi == (f"<|im_start|>system\n{BANK}<|im_end|>\n<|im_start|>user\nI lost my card.<|im_end|>\n"
                     "<|im_start|>assistant\nSorry to hear that; I can block it for you. Anything else?<|im_end|>\n"
                     "<|im_start|>user\nYes, please block it now.<|im_end|>\n<|im_start|>assistant\n")
    # What TRL trains on: the loss mask keeps the final answer, never the system prompt or the earlier turns.
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    recipe = with_max_length(build(cfg, cfg.base_dir / "trainer", cuda=False), 256)
    model = AutoModelForCausalLM.from_pretrained(cfg.student.model)
    trainer = SFTTrainer(model=model, args=recipe.sft, train_dataset=Dataset.from_list([pairs[MULTI]]),
                         processing_class=tokenizer)
    example = trainer.train_dataset[0]
    learnt = tokenizer.decode([t for t, label in zip(example["input_ids"], example["labels"]) if label != -100])
    assert learnt.startswith("Your card is blocked and a new one is on its way. Anything else?"), learnt
    assert "Sorry to hear" not in learnt and "Acme" not in learnt and "lost my card" not in learnt


def test_finetune_records_max_length_auto_and_the_rows_it_cut(chat_round, capsys):
    cfg, store, path = chat_round
    m = store.manifest("round-1/finetune")
    tokenizer = load_tokenizer(cfg, str(cfg.student.model), for_generation=False)
    lengths = token_lengths([prompt_completion(r, r["id"]) for r in training_rows(store, 1)], tokenizer)
    longest = max(f for _, f in lengths)  # p99 of 9 rows is the longest one, rounded up to a multiple of 8
    assert m.counts["max_length"] == max(128, -(-longest // 8) * 8) == auto_max_length(lengths)
    assert (m.counts["rows_truncated"], m.counts["rows_dropped_too_long"]) == (0, 0)
    assert m.extra["lengths"]["max_length_rule"] == "auto: p99 of 9 rows"
    assert m.extra["sft"]["max_length"] == m.counts["max_length"]  # the manifest records the number trained with
    assert main(["finetune", str(path), "--round", "1"]) == 0  # reused: the terminal line reads the manifest
    assert f"max_length {m.counts['max_length']}: 0 rows truncated, 0 dropped" in capsys.readouterr().out


def test_infer_asks_with_the_system_prompt_and_the_context_turns(chat_round):
    cfg, store, _ = chat_round
    test = {r["id"]: r for r in read_jsonl(store.open("prepare") / "test.jsonl")}
    answers = read_jsonl(store.open("round-1/infer") / "answers.jsonl")
    assert [a["id"] for a in answers] == list(test)
    for a in answers:
        assert a["system"] == test[a["id"]]["system"]
    multi = next(a for a in answers if a["id"] == MULTI)
    assert multi["context"] == test[MULTI]["messages"][1:3] and multi["instruction"] == "Yes, please block it now."
    # The stored answers are what the student says to the prompts with their system turn and context.
    tokenizer = load_tokenizer(cfg, str(cfg.student.model), for_generation=True)
    texts = [tokenizer.apply_chat_template(prompt_messages(test[a["id"]]), tokenize=False,
                                           add_generation_prompt=True) for a in answers]
    assert all(t.startswith("<|im_start|>system\n") for t in texts)
    adapter = store.open("round-1/finetune") / "adapter"
    again, _, _ = generate_transformers(cfg, str(cfg.student.model), adapter, texts, tokenizer)
    assert [a.text for a in again] == [a["answer"] for a in answers]


def test_judge_prompts_show_the_system_prompt_and_earlier_turns(chat_round):
    cfg, store, _ = chat_round
    rows = read_answers(store.open("round-1/infer") / "answers.jsonl")
    absolute = {req.key: req.messages[-1]["content"]
                for (req,) in plan_absolute(cfg, rows, template="judge.j2", schema={}, repeats=1)}
    pairwise = {req.key: req.messages[-1]["content"]
                for req, _ in plan_pairwise(cfg, rows, template="judge_pairwise.j2", schema={})}
    for row in rows:
        for prompt in (absolute[row["_key"]], pairwise[row["_key"]]):
            assert prompt.startswith(f"# System prompt the assistant was given\n{row['system']}\n\n")
            assert f"# Instruction\n{row['instruction']}\n" in prompt
    assert ("# Earlier turns of the conversation\n[user] I lost my card.\n[assistant] Sorry to hear that; I can "
            "block it for you. Anything else?\n\n# Instruction\nYes, please block it now.") in absolute[MULTI]
    assert "Earlier turns" not in absolute["cov-000012"]  # a single-turn row shows no empty context section
    plain = dict(rows[0], system=None, context=[])
    (req,) = plan_absolute(cfg, [plain], template="judge.j2", schema={}, repeats=1)[0]
    assert req.messages[-1]["content"].startswith("# Instruction\n")  # rows without them: the prompt as before


def test_training_rows_with_or_without_a_system_field_all_train():
    """Synthetic rows carry their seed's system prompt as ``system`` (with or without it in ``messages``); rows
    without one train as before."""
    single = {"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Hello"}]}
    with_system = {**single, "prompt": [{"role": "system", "content": BANK}, *single["prompt"]]}
    columns = {"instruction": "Hi", "response": "Hello"}
    turns = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello", "weight": 1}]}
    assert prompt_completion(columns, "r") == prompt_completion(turns, "r") == single
    assert prompt_completion({**columns, "system": BANK}, "r") == with_system
    assert prompt_completion({**turns, "system": BANK}, "r") == with_system
    assert prompt_completion({**turns, "system": None}, "r") == single
    full = {"messages": [{"role": "system", "content": BANK}, *turns["messages"]], "system": BANK}
    assert prompt_completion(full, "r") == with_system  # the system turn is not doubled
