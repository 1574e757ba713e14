"""Issue 12: a verb that needs the ``train`` extra says so in one line when it is missing, before doing anything
(``duo run`` included, so it never advises "rerun the same command to resume" for a missing package)."""

from __future__ import annotations

import sys

import pytest

from pipeline.cli import main
from tests.round_artifacts import make_config


@pytest.mark.parametrize("verb", ["finetune", "infer", "export", "run"])
def test_missing_train_extra_is_one_line_naming_the_extra(verb, tmp_path, monkeypatch, capsys):
    cfg = make_config(tmp_path / "task")
    monkeypatch.setitem(sys.modules, "peft", None)  # as if peft were not installed: find_spec gives None
    assert main([verb, str(cfg.source_path)]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"duo {verb} needs the 'train' extra (missing: peft)" in err and "pip install 'duo[train]'" in err
    assert "resume" not in captured.out + captured.err
    assert not (tmp_path / "task" / ".duo").exists()  # nothing started


def test_plan_and_vllm_export_do_not_need_the_extra(tmp_path, monkeypatch, capsys):
    cfg = make_config(tmp_path / "task")
    monkeypatch.setitem(sys.modules, "peft", None)
    assert main(["export", str(cfg.source_path), "--to", "vllm"]) == 1  # an empty store, not a missing extra
    assert "train" not in capsys.readouterr().err


def test_a_modules_warning_is_one_warning_line_on_stderr(capsys):
    """The journal logs a skipped line or a folder segment; the CLI shows it as ``warning: ...``."""
    import logging

    from pipeline.cli import warnings_to_stderr

    warnings_to_stderr()
    warnings_to_stderr()  # once, however often main() runs in one process
    logging.getLogger("pipeline.llm.journal.files").warning("journal/x.jsonl:3: skipped (not JSON)")
    assert capsys.readouterr().err == "warning: journal/x.jsonl:3: skipped (not JSON)\n"
