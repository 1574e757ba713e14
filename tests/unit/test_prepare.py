import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from pipeline import prepare
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.errors import DuoError
from pipeline.records import read_jsonl
from pipeline.store import open_store

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "alpaca_eval_sample.jsonl"
CATEGORIES = {"helpful_base", "koala", "oasst", "selfinstruct", "vicuna"}


def make_config(tmp_path: Path, source=SAMPLE, **data) -> Path:
    doc = {"task": {"name": "demo"}, "student": {"model": "m"},
           "data": {"source": str(source), "columns": {"instruction": "instruction", "response": "output",
                                                       "category": "dataset"}, **data}}
    path = tmp_path / "duo.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def prepared(path: Path, overrides=None, force=False):
    cfg = load_config(path, overrides)
    store = open_store(cfg)
    m = prepare.run(cfg, store, force=force)
    folder = store.open("prepare")
    return m, read_jsonl(folder / "train.jsonl"), read_jsonl(folder / "test.jsonl"), read_jsonl(folder / "bad_rows.jsonl")


def test_split_sizes_stratified_by_category(tmp_path):
    m, train, test, bad = prepared(make_config(tmp_path, test={"size": 0.25, "seed": 7}))
    assert (len(train), len(test), bad) == (60, 20, [])
    assert Counter(r["category"] for r in test) == {c: 4 for c in CATEGORIES}
    ids = [r["id"] for r in train + test]
    assert len(set(ids)) == 80 and all(i.startswith("cov-0000") for i in ids)
    row = test[0]
    assert row["messages"] == [{"role": "user", "content": row["instruction"]},
                               {"role": "assistant", "content": row["response"]}]
    assert m.counts["train"] == 60 and m.counts["test"] == 20 and m.counts["bad"] == 0
    assert m.counts["by_category"]["koala"] == {"train": 12, "test": 4}
    # ids follow source order: cov-000001 is the file's first line
    first = json.loads(SAMPLE.read_text().splitlines()[0])
    assert {r["id"]: r for r in train + test}["cov-000001"]["instruction"] == first["instruction"].strip()


def test_split_is_deterministic_and_depends_on_seed(tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    for d in (a, b, c):
        d.mkdir()
    _, _, test_a, _ = prepared(make_config(a, test={"size": 10, "seed": 1}))
    _, _, test_b, _ = prepared(make_config(b, test={"size": 10, "seed": 1}))
    _, _, test_c, _ = prepared(make_config(c, test={"size": 10, "seed": 2}))
    assert [r["id"] for r in test_a] == [r["id"] for r in test_b]
    assert len(test_a) == 10 and Counter(r["category"] for r in test_a) == {k: 2 for k in CATEGORIES}
    assert {r["id"] for r in test_a} != {r["id"] for r in test_c}


def test_uneven_categories_get_proportional_test_rows(tmp_path):
    rows = [{"instruction": f"Question number {i} about {'cats' if i < 30 else 'dogs'}?", "output": "An answer.",
             "dataset": "big" if i < 30 else "small"} for i in range(40)]
    src = tmp_path / "uneven.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _, train, test, _ = prepared(make_config(tmp_path, source=src, test={"size": 0.2}))
    assert Counter(r["category"] for r in test) == {"big": 6, "small": 2}
    assert len(train) == 32


def write_with_bad_rows(tmp_path: Path) -> Path:
    lines = SAMPLE.read_text().splitlines()[:20]
    dup = json.loads(lines[3])
    dup["instruction"] = "  " + dup["instruction"].upper() + "  "  # same prompt, other case and spacing
    extra = [
        '{"instruction": "broken json", "output": ',                        # line 21
        json.dumps({"instruction": "No answer here", "dataset": "oasst"}),  # line 22
        json.dumps({"instruction": "   ", "output": "x", "dataset": "oasst"}),  # line 23
        "",                                                                 # line 24: blank, ignored
        json.dumps({"instruction": 42, "output": "x", "dataset": "oasst"}),  # line 25
        json.dumps(dup),                                                    # line 26
        json.dumps(["not", "an", "object"]),                                # line 27
    ]
    path = tmp_path / "logs.jsonl"
    path.write_text("\n".join(lines + extra) + "\n")
    return path


def test_bad_rows_reported_with_line_numbers_and_skipped(tmp_path):
    m, train, test, bad = prepared(make_config(tmp_path, source=write_with_bad_rows(tmp_path),
                                               test={"size": 0.2}))
    assert len(train) + len(test) == 20
    got = {b["line"]: (b["kind"], b["reason"]) for b in bad}
    assert set(got) == {21, 22, 23, 25, 26, 27}
    assert got[21][1].startswith("not valid JSON")
    assert got[22][1].startswith("missing column 'output'")
    assert got[23][1] == "column 'instruction' is empty"
    assert got[25][1] == "column 'instruction' is int, expected a non-empty string"
    assert got[26] == ("duplicate", "duplicate instruction (same as line 4)")
    assert got[27][1] == "expected an object with columns, found list"
    assert m.counts["rows"] == 26 and m.counts["bad"] == 5 and m.counts["duplicates"] == 1


def test_fail_mode_is_a_one_line_error_naming_file_and_line(tmp_path, capsys):
    path = make_config(tmp_path, source=write_with_bad_rows(tmp_path), on_bad_row="fail")
    with pytest.raises(DuoError, match=r"logs.jsonl:21: not valid JSON"):
        prepared(path)
    assert main(["prepare", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "logs.jsonl:21: not valid JSON" in err[0] and "on_bad_row" in err[0]
    assert not (tmp_path / ".duo" / "demo" / "prepare").exists()


def test_split_is_fixed_once_made(tmp_path):
    path = make_config(tmp_path, source=write_with_bad_rows(tmp_path))
    m1, _, test1, _ = prepared(path)
    m2, _, test2, _ = prepared(path)  # unchanged: the existing artifact is returned as it is
    assert m2.timings["finished"] == m1.timings["finished"] and test1 == test2
    with pytest.raises(DuoError, match=r"split is fixed once made, but the data config .* changed.*--force.*"
                                       r"incomparable"):
        prepared(path, ["data.test.seed=5"])
    (tmp_path / "logs.jsonl").write_text((tmp_path / "logs.jsonl").read_text() + '{"instruction": "new"}\n')
    with pytest.raises(DuoError, match=r"content of .*logs.jsonl changed"):
        prepared(path)
    m3, _, _, bad3 = prepared(path, ["data.test.seed=5"], force=True)
    assert m3.config_hash != m1.config_hash and len(bad3) == 7


def test_csv_and_json_list_sources(tmp_path):
    csv_path = tmp_path / "logs.csv"
    csv_path.write_text('\ufeffprompt,answer\n"Say hi",Hi!\n"Write two lines","Line one\nline two"\n'
                        '"Empty answer",\n"Count to three","1, 2, 3"\n', encoding="utf-8")  # with a BOM, as Excel saves
    cfg_path = make_config(tmp_path, source=csv_path, test={"size": 1}, columns={"instruction": "prompt",
                                                                                   "response": "answer"})
    m, train, test, bad = prepared(cfg_path)
    assert [(b["line"], b["reason"]) for b in bad] == [(5, "column 'answer' is empty")]
    rows = {r["instruction"]: r for r in train + test}
    assert rows["Count to three"]["source_line"] == 6 and rows["Count to three"]["category"] is None
    assert rows["Write two lines"]["response"] == "Line one\nline two"
    assert "by_category" not in m.counts

    json_path = tmp_path / "list.json"
    json_path.write_text(json.dumps([{"instruction": f"Task {i}", "output": "done."} for i in range(5)] + [{}]))
    (tmp_path / ".duo").rename(tmp_path / "old-store")
    _, train, test, bad = prepared(make_config(tmp_path, source=json_path, columns={"response": "output"}))
    assert len(train) + len(test) == 5 and bad[0]["line"] == 6


def test_limit_reads_only_the_first_rows(tmp_path):
    m, train, test, _ = prepared(make_config(tmp_path, limit=30, test={"size": 0.1}))
    assert m.counts["rows"] == 30 and len(train) + len(test) == 30 and len(test) == 3
    assert max(int(r["id"].split("-")[1]) for r in train + test) == 30


def test_too_large_test_size_and_missing_file(tmp_path):
    with pytest.raises(DuoError, match=r"data.test.size 80: asks for 80 test rows but there are only 80"):
        prepared(make_config(tmp_path, test={"size": 80}))
    with pytest.raises(DuoError, match=r"data.source: file not found: .*nope.jsonl"):
        prepared(make_config(tmp_path, source=tmp_path / "nope.jsonl"))


def test_cli_prints_summary(tmp_path, capsys, monkeypatch):
    out_file = tmp_path / "gh_out"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out_file))
    assert main(["prepare", str(make_config(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "80 rows -> 72 train / 8 test (0 bad, 0 duplicate" in out and "koala:" in out
    assert "artifact=prepare" in out_file.read_text()


def test_parquet_source(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()[:12]]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "logs.parquet")
    m, train, test, bad = prepared(make_config(tmp_path, source=tmp_path / "logs.parquet", test={"size": 2}))
    assert (len(train), len(test), bad, m.extra["format"]) == (10, 2, [], "parquet")


def test_hub_dataset_source(tmp_path, fake_hub):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=fake_hub.url)  # token from HF_TOKEN, set by the fixture
    repo = "duo-tester/service-logs"
    api.create_repo(repo, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"".join(line.encode() + b"\n" for line in SAMPLE.read_text().splitlines()[:20]),
                    path_in_repo="data/train.jsonl", repo_id=repo, repo_type="dataset")
    m, train, test, bad = prepared(make_config(tmp_path, source=repo, test={"size": 4}))
    assert (len(train), len(test), bad, m.extra["format"], m.extra["source_sha256"]) == (16, 4, [], "hub", None)
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(DuoError, match=r"data.source duo-tester/missing \(split train\): cannot load from the Hub"):
        prepared(make_config(other, source="duo-tester/missing"))


def test_test_prompts_near_train_prompts_are_reported(tmp_path, capsys):
    rows = [{"instruction": f"Tell me an interesting and surprising fact about the planet number {i} that orbits a "
                            f"bright star in some faraway galaxy, please.", "output": "A fact."} for i in range(10)]
    rows += [{"instruction": f"Unrelated question {w}?", "output": "Yes."} for w in "abcdefghij"]
    src = tmp_path / "templated.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = make_config(tmp_path, source=src, test={"size": 6, "seed": 0}, columns={"response": "output"})
    m, _, test, _ = prepared(path)
    templated = {r["id"] for r in test if r["instruction"].startswith("Tell me")}
    assert templated and set(m.extra["test_near_train_ids"]) == templated
    assert m.extra["test_near_train"] == len(templated)
    (tmp_path / ".duo").rename(tmp_path / "old")
    assert main(["prepare", str(path)]) == 0
    assert "near copies of train prompts" in capsys.readouterr().out
