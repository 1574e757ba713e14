"""``duo rollout``'s files and checks without a gateway running (the gateways themselves:
tests/integration/test_gateway_litellm.py and test_gateway_portkey.py)."""

from __future__ import annotations

import json

import pytest
import yaml

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.rollout.checks import rollout_problems
from pipeline.rollout.gateway import write_gateway_configs


def config(tmp_path, **rollout):
    doc = {"task": {"name": "demo"}, "data": {"source": "rows.jsonl"}, "student": {"model": "m"},
           "store": {"kind": "local", "path": "store"},
           "service": {"synthesize": {"provider": "openai", "model": "gpt-4o", "timeout_s": 60}},
           "rollout": rollout}
    path = tmp_path / "duo.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_litellm_weights_fallback_and_shadow(tmp_path):
    cfg = load_config(config(tmp_path, shadow=0.4, student={"base_url": "http://10.0.0.5:8080/v1"}))
    paths = write_gateway_configs(cfg, 0.25)
    assert [p.name for p in paths] == ["litellm.yaml", "duo_capture.py", "duo_capture.json"]
    assert all(p.parent == tmp_path / "deploy" for p in paths)
    doc = yaml.safe_load(paths[0].read_text())
    served = [m for m in doc["model_list"] if m["model_name"] == "demo"]
    weights = {(m["model_info"]["duo_deployment"], m["litellm_params"].get("silent_model")):
               m["litellm_params"]["weight"] for m in served}
    assert weights == {("student", None): 0.25, ("service", "demo-shadow"): 0.3, ("service", None): 0.45}
    assert doc["router_settings"]["fallbacks"] == [{"demo": ["demo-service"]}]
    student = next(m for m in served if m["model_info"]["duo_deployment"] == "student")["litellm_params"]
    assert student["api_base"] == "http://10.0.0.5:8080/v1" and student["timeout"] == 30
    assert doc["litellm_settings"]["callbacks"] == ["duo_capture.handler"]
    settings = json.loads(paths[2].read_text())
    assert settings["traffic"] == str(tmp_path / "store" / "traffic")
    keys = {m["litellm_params"]["api_key"] for m in doc["model_list"]}
    assert keys == {"os.environ/OPENAI_API_KEY", "none"}  # read from the environment, never written


def test_portkey_loadbalance_with_fallback(tmp_path):
    cfg = load_config(config(tmp_path, gateway="portkey", timeout_s=5))
    (path,) = write_gateway_configs(cfg, 0.05)
    doc = json.loads(path.read_text())
    assert doc["strategy"] == {"mode": "loadbalance"}
    student, service = doc["targets"]
    assert (student["weight"], service["weight"]) == (0.05, 0.95)
    assert student["strategy"] == {"mode": "fallback"}
    assert student["targets"][0]["request_timeout"] == 5000
    assert student["targets"][1]["api_key"] == "${OPENAI_API_KEY}"  # filled in by envsubst, never written


@pytest.mark.parametrize("rollout, expected", [
    ({"steps": [0.25, 0.05]}, "rollout.steps: found [0.25, 0.05]"),
    ({"canary": 0.1}, "rollout.canary: found 0.1; expected one of rollout.steps"),
    ({"student": {"base_url": "localhost:8080"}}, "rollout.student.base_url: found 'localhost:8080'"),
    ({"timeout_s": 90}, "rollout.timeout_s: found 90 s; expected less than service.synthesize.timeout_s"),
])
def test_checks_name_the_key(tmp_path, capsys, rollout, expected):
    path = config(tmp_path, **rollout)
    problems = rollout_problems(load_config(path))
    assert len(problems) == 1 and problems[0].startswith(expected)
    assert main(["rollout", str(path)]) == 1
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "deploy").exists()


def test_defaults_pass(tmp_path):
    assert rollout_problems(load_config(config(tmp_path))) == []


def test_shadow_only_start(tmp_path):
    """canary 0: no student deployment in the draw, every service answer mirrored to it."""
    cfg = load_config(config(tmp_path, canary=0))
    assert rollout_problems(cfg) == []
    doc = yaml.safe_load(write_gateway_configs(cfg, 0)[0].read_text())
    served = [m for m in doc["model_list"] if m["model_name"] == "demo"]
    assert [(m["model_info"]["duo_deployment"], m["litellm_params"].get("silent_model")) for m in served] == [
        ("service", "demo-shadow")]
