"""Issue #11: the launcher's command line, who takes the lock under a launch, and the --processes flag."""

from __future__ import annotations

import argparse

import pytest

from pipeline.cli import main
from pipeline.config import build_config
from pipeline.errors import DuoError
from pipeline.model import launch


def config(tmp_path, **launch_section):
    doc = {"task": {"name": "t"}, "data": {"source": "x"}, "student": {"model": "m"},
           "finetune": {"launch": launch_section}}
    return build_config(doc, base_dir=tmp_path)


def test_one_machine_gets_torchrun_a_free_port_and_the_stage_arguments(tmp_path):
    cfg = config(tmp_path)
    args = argparse.Namespace(config="duo.yaml", set=["store.kind=hub"], force=True, processes=2)
    assert launch.wanted(cfg.finetune.launch, args)
    cmd = launch.command_line(cfg, cfg.finetune.launch, 2, "finetune", launch.stage_argv(args, 3), "finetune.launch")
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"] and "--multi_gpu" in cmd
    assert cmd[cmd.index("--num_processes") + 1] == "2" and cmd[cmd.index("--main_process_port") + 1] == "0"
    assert cmd[cmd.index("-m", 3):] == ["-m", "pipeline", "finetune", "duo.yaml", "--round", "3", "--set",
                                        "store.kind=hub", "--force"]


def test_a_config_file_keeps_its_own_counts_port_and_precision(tmp_path):
    (tmp_path / "fsdp.yaml").write_text("distributed_type: FSDP\nnum_processes: 8\n")
    cfg = config(tmp_path, config_file="fsdp.yaml")
    args = argparse.Namespace(config="duo.yaml", set=[], force=False, processes=None)
    assert launch.wanted(cfg.finetune.launch, args)  # one process in duo's config, but the file may ask for more
    cmd = launch.command_line(cfg, cfg.finetune.launch, 1, "finetune", ["duo.yaml"], "finetune.launch")
    assert cmd[cmd.index("--config_file") + 1] == str(tmp_path / "fsdp.yaml")
    for flag in ("--num_processes", "--main_process_port", "--mixed_precision", "--multi_gpu"):
        assert flag not in cmd
    missing = config(tmp_path, config_file="nope.yaml")
    with pytest.raises(DuoError, match=r"finetune.launch.config_file: no accelerate config file .*nope.yaml"):
        launch.command_line(cfg, missing.finetune.launch, 2, "finetune", [], "finetune.launch")


def test_one_process_and_launched_processes_do_not_launch(tmp_path, monkeypatch):
    cfg = config(tmp_path)
    assert not launch.wanted(cfg.finetune.launch, argparse.Namespace(processes=None))
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not launch.wanted(cfg.finetune.launch, argparse.Namespace(processes=4))


@pytest.mark.parametrize("env, skips", [
    ({}, False),  # a plain duo process takes the lock
    ({"DUO_LAUNCHED": "1", "LOCAL_RANK": "0", "RANK": "0"}, True),  # launched by duo: the parent holds it
    ({"LOCAL_RANK": "0", "RANK": "0"}, False),  # rank 0 of a launch started by hand takes it
    ({"LOCAL_RANK": "1", "RANK": "1"}, True),  # the other ranks never do
    ({"LOCAL_RANK": "0", "RANK": "8"}, True),  # rank 0 of a second machine neither
])
def test_who_takes_the_task_lock(monkeypatch, env, skips):
    for key in ("DUO_LAUNCHED", "LOCAL_RANK", "RANK", "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert launch.holds_no_lock() is skips


def test_a_bad_process_count_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("DUO_PROCESSES", "two")
    assert main(["finetune", "duo.yaml"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: DUO_PROCESSES='two': expected a whole number of processes, 1 or more for --processes"]
    assert main(["infer", "duo.yaml", "--processes", "0"]) == 1
    assert "expected a whole number of processes" in capsys.readouterr().err
