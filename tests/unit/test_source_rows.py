"""Bad text, a folder as the source and data that is all duplicates: each one line naming what is wrong and where,
in ``duo prepare`` and in ``duo validate`` alike (issue 19, items 6 and 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.records import read_jsonl, write_jsonl
from tests.unit.test_validate import one_error

BASE = "task: {name: demo}\nstudent: {model: m}\ndata: {source: %s%s}\n"
SURROGATE_LINE = '{"instruction": "bad \\ud800 text", "response": "fine"}'  # JSON escapes decode to a lone surrogate


def rows(n: int = 30) -> list[str]:
    return [json.dumps({"instruction": f"question {i}", "response": f"answer {i}"}) for i in range(n)]


def setup(tmp_path: Path, lines: list[str], extra: str = "", source: str = "data.jsonl") -> Path:
    (tmp_path / "data.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    path = tmp_path / "duo.yaml"
    path.write_text(BASE % (source, extra))
    return path


# -- a lone surrogate ----------------------------------------------------------------------------------------------

def test_a_lone_surrogate_is_a_bad_row_with_its_line(tmp_path, capsys):
    """Regression (issue 19): a row holding "\\ud800" made ``prepare`` crash writing train.jsonl."""
    lines = rows()
    lines[3] = SURROGATE_LINE
    path = setup(tmp_path, lines)
    assert main(["prepare", str(path)]) == 0, capsys.readouterr().err
    folder = tmp_path / ".duo" / "demo" / "prepare"
    bad = read_jsonl(folder / "bad_rows.jsonl")
    assert [(b["line"], b["kind"]) for b in bad] == [(4, "invalid")]
    assert bad[0]["reason"] == ("column 'instruction' has a lone surrogate (U+D800) at character 5; "
                                "expected UTF-8 text")
    assert bad[0]["row"]["instruction"] == "bad \ud800 text"  # the bad row is kept as it was, not lost
    kept = read_jsonl(folder / "train.jsonl") + read_jsonl(folder / "test.jsonl")
    assert len(kept) == 29 and all(r["source_line"] != 4 for r in kept)


def test_a_lone_surrogate_fails_validate_and_prepare_in_fail_mode(tmp_path, capsys):
    lines = rows()
    lines[3] = SURROGATE_LINE
    path = setup(tmp_path, lines)
    where = f"{tmp_path.resolve() / 'data.jsonl'}:4"
    assert one_error(capsys, ["validate", str(path)]) == (
        f"error: {where}: column 'instruction' has a lone surrogate (U+D800) at character 5; expected UTF-8 text")
    line = one_error(capsys, ["prepare", str(path), "--set", "data.on_bad_row=fail"])
    assert line.startswith(f"error: {where}: column 'instruction' has a lone surrogate")


def test_a_lone_surrogate_beyond_the_first_rows_fails_validate_in_fail_mode(tmp_path, capsys):
    lines = rows(40)
    lines[34] = SURROGATE_LINE
    path = setup(tmp_path, lines, ", on_bad_row: fail")
    line = one_error(capsys, ["validate", str(path)])
    assert line.startswith(f"error: {tmp_path.resolve() / 'data.jsonl'}:35: column 'instruction' has a lone")
    # skipped rows are prepare's to report: validate stays quiet in skip mode
    assert main(["validate", str(path), "--set", "data.on_bad_row=skip"]) == 0


def test_a_lone_surrogate_in_a_chat_turn_names_the_message(tmp_path, capsys):
    chat = [json.dumps({"messages": [{"role": "user", "content": f"hello {i}"},
                                     {"role": "assistant", "content": f"hi {i}"}]}) for i in range(10)]
    chat[2] = ('{"messages": [{"role": "user", "content": "hello"}, '
               '{"role": "assistant", "content": "hi \\udc80"}]}')
    line = one_error(capsys, ["validate", str(setup(tmp_path, chat))])
    assert line.endswith("data.jsonl:3: message 2 (assistant) has a lone surrogate (U+DC80) at character 4; "
                         "expected UTF-8 text")


def test_write_jsonl_keeps_a_row_it_cannot_write_as_utf8(tmp_path):
    path = tmp_path / "rows.jsonl"
    assert write_jsonl(path, [{"a": "x\ud800y"}, {"a": "é"}]) == 2
    assert read_jsonl(path) == [{"a": "x\ud800y"}, {"a": "é"}]
    assert path.read_text(encoding="utf-8").splitlines()[1] == '{"a": "é"}'  # other rows stay readable as text


# -- a folder as the source ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["logs", "logs.jsonl"])
def test_a_folder_as_the_source_is_one_line_naming_it(tmp_path, capsys, name):
    """Regression (issue 19): a folder was taken for a Hub dataset id, or said to be a missing file."""
    (tmp_path / name).mkdir()
    path = setup(tmp_path, rows(), source=name)
    expected = (f"error: data.source {name}: {tmp_path.resolve() / name} is a folder; expected a data file "
                "(.jsonl, .json, .csv, .parquet) or a Hugging Face Hub dataset id")
    assert one_error(capsys, ["validate", str(path)]) == expected
    assert one_error(capsys, ["prepare", str(path)]) == expected


# -- all duplicates ------------------------------------------------------------------------------------------------

def test_data_that_is_all_duplicates_fails_validate(tmp_path, capsys):
    """Regression (issue 19): ``validate`` said ok, ``prepare`` failed later."""
    same = [json.dumps({"instruction": "the same question", "response": f"answer {i}"}) for i in range(30)]
    path = setup(tmp_path, same)
    line = one_error(capsys, ["validate", str(path)])
    assert line == (f"error: {tmp_path.resolve() / 'data.jsonl'}: only 1 valid row(s) out of 30; need at least 2; "
                    "first bad line 2: duplicate instruction (same as line 1)")
    assert one_error(capsys, ["prepare", str(path)]) == line


def test_too_few_distinct_rows_for_the_test_size_fails_validate(tmp_path, capsys):
    lines = rows(5) + [json.dumps({"instruction": "question 1", "response": f"again {i}"}) for i in range(25)]
    path = setup(tmp_path, lines, ", test: {size: 5}")
    line = one_error(capsys, ["validate", str(path)])
    assert line == ("error: data.test.size 5: asks for 5 test rows but there are only 5 valid rows "
                    "(25 duplicate rows left out); leave at least one for training")
    assert one_error(capsys, ["prepare", str(path)]) == line
    assert main(["validate", str(path), "--set", "data.test.size=4"]) == 0
