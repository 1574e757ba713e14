"""The infer stage on the tiny model: one answer per test prompt, in test-set order, with the params recorded."""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from pipeline.data.chat import prompt_messages
from pipeline.errors import DuoError
from pipeline.model.generation import generate_transformers
from pipeline.model.student import load_tokenizer
from pipeline.records import read_jsonl
from pipeline.report.lineage import answer_counts
from pipeline.stages import finetune, infer
from pipeline.store import LocalStore
from tests.model_fixtures import make_prepare, qa_rows, tiny_config

N_TEST = 7


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, tiny_model_dir):
    """A store with prepare (7 test prompts of varied length) and a round-1 adapter trained for 10 steps."""
    base = tmp_path_factory.mktemp("infer")
    cfg = tiny_config(base, tiny_model_dir, finetune={"sft": {"max_steps": 10, "learning_rate": 1e-2}},
                      infer={"batch_size": 3, "max_new_tokens": 8})
    store = LocalStore(base / "store")
    test = qa_rows(N_TEST, seed=1, prefix="e")
    test[2]["category"] = None
    test[4]["messages"] = [{"role": "system", "content": "Be brief."}, *test[4]["messages"]]
    make_prepare(store, qa_rows(24), test)
    finetune.run(cfg, store, 1)
    manifest = infer.run(cfg, store, 1)
    return cfg, store, manifest, test


def test_one_answer_per_test_prompt_in_order_with_params(tuned, tiny_model_dir):
    _, store, m, test = tuned
    answers = read_jsonl(store.open("round-1/infer") / "answers.jsonl")
    assert [a["id"] for a in answers] == [t["id"] for t in test]
    for a, t in zip(answers, test):
        assert set(a) == {"id", "instruction", "reference", "category", "answer", "sample", "model", "adapter",
                          "params", "system", "context", "finish_reason"}
        assert (a["instruction"], a["reference"], a["category"]) == (t["instruction"], t["response"], t["category"])
        assert a["model"] == str(tiny_model_dir) and a["adapter"] == "round-1/finetune"
        assert a["params"] == {"backend": "transformers", "max_new_tokens": 8, "do_sample": False}
        assert a["answer"].startswith("The answer"), a  # the adapter is applied: the base model says nonsense
    assert m.counts["answers"] == N_TEST and 0 < m.counts["generated_tokens"] <= N_TEST * 8
    # 8 new tokens cannot hold "The answer is N." and its end token: every answer is cut, and says so.
    assert [a["finish_reason"] for a in answers] == ["length"] * N_TEST
    assert m.counts["truncated_answers"] == N_TEST and m.counts["empty_answers"] == 0
    assert answer_counts(store, 1) == {"total": N_TEST, "empty": 0, "truncated": N_TEST, "max_new_tokens": 8}
    assert m.extra["tokens_per_s"] > 0 and m.extra["params"]["backend"] == "transformers"
    assert [p["artifact"] for p in m.parents] == ["prepare", "round-1/finetune"]


def test_batched_left_padded_generation_matches_one_prompt_at_a_time(tuned):
    cfg, store, _, test = tuned
    tokenizer = load_tokenizer(cfg, str(cfg.student.model))
    texts = [tokenizer.apply_chat_template(prompt_messages(r), tokenize=False, add_generation_prompt=True)
             for r in test]
    assert len({len(t) for t in texts}) > 2  # prompts of several lengths, so batches hold padding
    adapter = store.open("round-1/finetune") / "adapter"
    batched, _, _ = generate_transformers(cfg, str(cfg.student.model), adapter, texts, tokenizer)
    single_cfg = tiny_config(cfg.base_dir, cfg.student.model, infer={"batch_size": 1, "max_new_tokens": 8})
    single, _, _ = generate_transformers(single_cfg, str(cfg.student.model), adapter, texts, tokenizer)
    assert batched == single
    stored = read_jsonl(store.open("round-1/infer") / "answers.jsonl")
    assert [(a["answer"], a["finish_reason"]) for a in stored] == batched


def test_an_answer_that_reaches_a_stop_token_says_stop(tuned):
    """Issue #13: ``finish_reason`` is ``stop`` when the student ends its answer, ``length`` when cut."""
    cfg, store, _, test = tuned
    tokenizer = load_tokenizer(cfg, str(cfg.student.model), for_generation=True)
    texts = [tokenizer.apply_chat_template(prompt_messages(r), tokenize=False, add_generation_prompt=True)
             for r in test]
    adapter = store.open("round-1/finetune") / "adapter"
    tokenizer.eos_token = tokenizer.tokenize(" is")[0]  # the tuned student says "The answer is ...": it stops there
    stopped, generated, _ = generate_transformers(cfg, str(cfg.student.model), adapter, texts, tokenizer)
    assert [(a.text, a.finish_reason) for a in stopped] == [("The answer is", "stop")] * N_TEST
    assert generated == 3 * N_TEST  # "The", " answer", " is": no padding counted after the stop


def test_system_turns_of_a_test_row_reach_the_prompt():
    row = qa_rows(1)[0]
    row["messages"] = [{"role": "system", "content": "Be brief."}, *row["messages"]]
    assert prompt_messages(row) == row["messages"][:-1]
    assert prompt_messages({"instruction": "hi"}) == [{"role": "user", "content": "hi"}]


def test_rerun_skips_and_changed_params_regenerate(tuned):
    cfg, store, m, _ = tuned
    assert infer.run(cfg, store, 1).timings["finished"] == m.timings["finished"]
    sampled = tiny_config(cfg.base_dir, cfg.student.model, infer={"batch_size": 3, "max_new_tokens": 4,
                                                                  "do_sample": True, "temperature": 0.7})
    redone = infer.run(sampled, store, 1)
    assert redone.config_hash != m.config_hash
    answers = read_jsonl(store.open("round-1/infer") / "answers.jsonl")
    assert answers[0]["params"] == {"backend": "transformers", "max_new_tokens": 4, "do_sample": True,
                                    "temperature": 0.7, "top_p": 1.0, "seed": 42}
    assert redone.counts["generated_tokens"] <= N_TEST * 4
    infer.run(cfg, store, 1, force=True)  # leave the module's artifact as the other tests expect it


def test_cli_max_test_samples_and_outputs(tuned, monkeypatch, capsys, tmp_path):
    cfg, store, _, test = tuned
    config = tmp_path / "duo.yaml"
    config.write_text(json.dumps({"task": {"name": "tiny"}, "data": {"source": "x.jsonl"},
                                  "student": {"model": str(cfg.student.model)}, "store": {"path": str(store.root)},
                                  "finetune": cfg.raw["finetune"], "infer": {"max_new_tokens": 4,
                                                                             "max_test_samples": 2}}))
    outputs = tmp_path / "gh_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    try:
        assert main(["infer", str(config), "--round", "1"]) == 0
        assert "infer round 1 (round 1's adapter): 2 answers" in capsys.readouterr().out
        answers = read_jsonl(store.open("round-1/infer") / "answers.jsonl")
        assert [a["id"] for a in answers] == [t["id"] for t in test[:2]]
        lines = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
        assert lines == {"artifact": "round-1/infer", "location": str(store.local_path("round-1/infer"))}
    finally:
        infer.run(cfg, store, 1, force=True)


def test_vllm_asked_for_but_unavailable_is_one_line_error(tuned):
    cfg, store, _, _ = tuned
    before = (store.open("round-1/infer") / "answers.jsonl").read_text()
    vllm_cfg = tiny_config(cfg.base_dir, cfg.student.model, infer={"backend": "vllm"})
    with pytest.raises(DuoError, match="infer.backend: vllm was asked for but"):
        infer.run(vllm_cfg, store, 1)
    assert (store.open("round-1/infer") / "answers.jsonl").read_text() == before  # kept as it was


def test_missing_adapter_is_reported(tmp_path, tiny_model_dir):
    cfg = tiny_config(tmp_path, tiny_model_dir)
    store = LocalStore(tmp_path / "store")
    make_prepare(store, qa_rows(4), qa_rows(2, prefix="e"))
    with pytest.raises(DuoError, match=r"infer \(round 1\) needs artifact 'round-1/finetune'"):
        infer.run(cfg, store, 1)


def test_round_0_is_the_untuned_base_and_is_reused_while_nothing_changes(tuned):
    """Issue #9: the baseline answers with no adapter, once; a rerun reuses it; a changed infer setting redoes it."""
    cfg, store, _, test = tuned
    first = infer.run(cfg, store, 0)
    answers = read_jsonl(store.open("round-0/infer") / "answers.jsonl")
    assert [a["id"] for a in answers] == [t["id"] for t in test]
    assert all(a["adapter"] is None for a in answers) and first.extra["baseline"] is True
    assert [p["artifact"] for p in first.parents] == ["prepare"]  # no adapter among its inputs
    tuned_answers = [a["answer"] for a in read_jsonl(store.open("round-1/infer") / "answers.jsonl")]
    assert [a["answer"] for a in answers] != tuned_answers  # the adapter really is left out
    assert infer.run(cfg, store, 0).timings == first.timings  # reused
    import dataclasses
    longer = dataclasses.replace(cfg, infer=dataclasses.replace(cfg.infer, max_new_tokens=9),
                                 raw={**cfg.raw, "infer": {**cfg.raw["infer"], "max_new_tokens": 9}})
    assert infer.run(longer, store, 0).timings != first.timings


def test_sampled_answers_per_prompt(tuned):
    cfg, store, _, test = tuned
    import dataclasses
    with pytest.raises(DuoError, match="do_sample"):
        infer.run(dataclasses.replace(cfg, infer=dataclasses.replace(cfg.infer, samples_per_prompt=3)), store, 0,
                  force=True)
    sampled = dataclasses.replace(cfg, infer=dataclasses.replace(cfg.infer, samples_per_prompt=3, do_sample=True,
                                                                 temperature=0.8))
    m = infer.run(sampled, store, 1, force=True)
    answers = read_jsonl(store.open("round-1/infer") / "answers.jsonl")
    assert m.counts["prompts"] == len(test) and m.counts["answers"] == 3 * len(test)
    assert [(a["id"], a["sample"]) for a in answers] == [(t["id"], j) for t in test for j in range(3)]
