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


def write(tmp_path: Path, text: str) -> Path:
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
