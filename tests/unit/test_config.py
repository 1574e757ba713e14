from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import build_config, load_config
from pipeline.errors import ConfigError

GOOD = """
task: {name: demo, description: general assistant}
data: {source: data.jsonl, columns: {instruction: instruction, response: output, category: dataset}}
student: {model: HuggingFaceTB/SmolLM2-135M-Instruct}
service:
  judge: {provider: openai, model: gpt-4o, price_input_per_1m: 2.5, price_output_per_1m: 10}
"""

BAD = """
task: {name: demo, nmae: typo}
data: {source: data.jsonl, test: {size: "ten percent"}}
student: {revision: main}
"""


ROWS = "".join(f'{{"instruction": "question {i}", "output": "answer {i}", "dataset": "d"}}\n' for i in range(30))


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "data.jsonl").write_text(ROWS)  # the data source GOOD names: `duo validate` reads its first rows
    path = tmp_path / "duo.yaml"
    path.write_text(text)
    return path


def test_good_config_validates(tmp_path, capsys):
    assert main(["validate", str(write(tmp_path, GOOD))]) == 0
    assert "ok" in capsys.readouterr().out


def test_bad_config_names_every_problem_with_its_path(tmp_path, capsys):
    assert main(["validate", str(write(tmp_path, BAD))]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3, err
    joined = "\n".join(err)
    assert "task.nmae: unknown key" in joined
    assert 'data.test.size: found "ten percent" (string); expected number' in joined
    assert "student.model: missing required field" in joined
    assert all("Traceback" not in line for line in err)


def test_defaults_and_overrides(tmp_path):
    cfg = load_config(write(tmp_path, GOOD), ["evaluate.judge_repeats=7", "store.kind=hub"])
    assert cfg.evaluate.judge_repeats == 7
    assert cfg.store.kind == "hub"
    assert cfg.store.dataset_repo == "demo-duo-data"
    assert cfg.data.test.size == 0.1
    assert cfg.service.judge.api_key_env == "OPENAI_API_KEY"
    assert cfg.service.synthesize is None
    assert cfg.evaluate.pass_rule[0].metric == "similarity"
    assert cfg.base_dir == tmp_path.resolve()


def test_override_with_wrong_type_is_reported(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, GOOD), ["infer.batch_size=many"])
    assert "infer.batch_size" in exc.value.problems[0]


def test_synthesis_schedule_doubles_by_default():
    cfg = build_config({"task": {"name": "t"}, "data": {"source": "x"}, "student": {"model": "m"},
                        "synthesize": {"samples": 100}})
    assert [cfg.synthesize.target_for_round(r) for r in (1, 2, 3)] == [100, 200, 400]


def test_invalid_yaml_is_one_line(tmp_path, capsys):
    path = write(tmp_path, "task: [unclosed\n")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid YAML" in err[0]


def test_validate_prints_the_effective_recipe(tmp_path, capsys):
    path = write(tmp_path, GOOD + "finetune: {lora: {r: 16}, sft: {warmup_ratio: 0.05}}\n")
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    lora = next(line for line in out if line.startswith("  finetune.lora: "))
    sft = next(line for line in out if line.startswith("  finetune.sft: "))
    assert "r=16, lora_alpha=16, lora_dropout=0.05" in lora
    assert "warmup_steps=0.05" in sft and "learning_rate=0.0002" in sft and "warmup_ratio" not in sft


@pytest.mark.parametrize("section, key", [("lora", "rank"), ("sft", "learnig_rate")])
def test_validate_rejects_an_unknown_recipe_key_in_one_line(tmp_path, capsys, section, key):
    path = write(tmp_path, GOOD + f"finetune: {{{section}: {{{key}: 1}}}}\n")
    assert main(["validate", str(path)]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: finetune.{section}.{key}: "), captured.err
    assert "ok" not in captured.out


def test_validate_without_peft_or_trl_stays_light(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trl" else real(name, *a))
    path = write(tmp_path, GOOD + "finetune: {lora: {rank: 4}}\n")
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "finetune.lora: rank=4, r=8" in out and "(keys not checked: peft/trl not installed)" in out


def test_config_types_are_built_nested_and_re_exported():
    from pipeline import config, config_types

    cfg = build_config({"task": {"name": "t"}, "data": {"source": "x"}, "student": {"model": "m"},
                        "service": {"synthesize": {"provider": "gemini", "model": "g"}}})
    assert config.Config is config_types.Config and config.ServiceLLMConfig is config_types.ServiceLLMConfig
    assert isinstance(cfg.data.columns, config_types.ColumnsConfig)
    assert cfg.service.synthesize.api_key_env == "GEMINI_API_KEY" and cfg.service.judge is None
    assert [type(r) for r in cfg.evaluate.offline_pass_rule] == [config_types.RuleCondition]
    assert cfg.store.path == str(Path(".duo") / "t") and cfg.store.model_repo == "t-duo-adapter"
    assert cfg.raw["store"]["path"] is None  # derived values stay out of the hashed document


def test_recording_notes_only_configs_built_after_it_began(tmp_path):
    """A config another thread still reads (a test's leftover worker) must not count as the stage's reads."""
    import yaml

    from pipeline.config_reads import in_stage, recording

    old = build_config(yaml.safe_load(GOOD))
    with recording() as reads, in_stage("synthesize"):
        old.synthesize.samples  # noqa: B018 - a read is the point
        new = build_config(yaml.safe_load(GOOD))
        new.synthesize.growth  # noqa: B018
    assert reads == {"synthesize": {"synthesize.growth"}}


def test_a_stage_entered_by_two_threads_at_once_is_left_when_both_leave():
    """Regression: concurrent decides in threads restored each other's stage and left ``decide`` set for good."""
    import threading

    from pipeline import config_reads

    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        with config_reads.in_stage("decide"):
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second():
        first_in.wait(5)
        with config_reads.in_stage("decide"):
            second_in.set()
            first_out.wait(5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert config_reads._stage is None
