import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from pipeline.artifacts import ARTIFACTS
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.errors import DuoError
from pipeline.records import read_jsonl
from pipeline.stages import prepare
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


# --------------------------------------------------------------------------- chat logs (issue #13)

CHAT_LOGS = Path(__file__).resolve().parent.parent / "data" / "chat_logs.jsonl"
BANK = "You are Acme Bank's support assistant. Answer in one short sentence and end with: Anything else?"
FRENCH = "You are a translator. Reply with the French translation only."


def chat_config(tmp_path: Path, source=CHAT_LOGS, **data) -> Path:
    doc = {"task": {"name": "chat"}, "student": {"model": "m"},
           "data": {"source": str(source), "test": {"size": 4, "seed": 1}, **data}}
    path = tmp_path / "duo.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_openai_chat_logs_keep_system_prompts_and_context_turns(tmp_path):
    """Issue #13: chat / fine-tuning / stored-completion JSONL rows become records with their system prompt."""
    m, train, test, bad = prepared(chat_config(tmp_path))
    assert (len(train), len(test)) == (9, 4)
    assert m.counts["with_system"] == 13 and m.counts["multi_turn"] == 1 and m.counts["bad"] == 3
    rows = {r["id"]: r for r in train + test}
    for r in rows.values():
        assert set(r) == {"id", "instruction", "response", "category", "system", "messages", "source_line"}
        assert r["system"] in (BANK, FRENCH) and r["messages"][0] == {"role": "system", "content": r["system"]}
        assert r["messages"][-2:] == [{"role": "user", "content": r["instruction"]},
                                      {"role": "assistant", "content": r["response"]}]
    assert {r["system"] for r in train} == {BANK, FRENCH} and {r["system"] for r in test} == {BANK, FRENCH}
    multi = rows["cov-000009"]  # earlier turns are context; the last assistant turn is the target
    assert [t["role"] for t in multi["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert multi["instruction"] == "Yes, please block it now." and multi["response"].startswith("Your card is blocked")
    assert multi["messages"][1]["content"] == "I lost my card."
    assert rows["cov-000008"]["messages"][-1] == {"role": "assistant", "content": rows["cov-000008"]["response"]}
    assert (rows["cov-000010"]["system"], rows["cov-000010"]["instruction"]) == (FRENCH, "Good morning")  # developer
    assert rows["cov-000012"]["response"] == "Yes, with 2 percent interest. Anything else?"  # request + response
    assert rows["cov-000013"]["response"] == "Yes, it works in every country. Anything else?"  # stored completion
    assert {b["line"]: b["reason"] for b in bad} == {
        14: "the conversation ends with a user turn; expected the assistant's answer last (the target to learn)",
        15: "message 2 is a tool result with no assistant tool call before it",
        16: "message 2 (user) is empty"}


def test_chat_row_problems_each_get_one_line(tmp_path):
    rows = [{"messages": [{"role": "assistant", "content": "Hi"}]},
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "system", "content": "Late"},
                          {"role": "assistant", "content": "Hello"}]},
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                          {"role": "assistant", "content": "A cat"}]},
            {"messages": [{"role": "user", "content": "Weather?"},
                          {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]}]},
            {"messages": "hello"},
            {"request": {"messages": [{"role": "user", "content": "Hi"}]}},
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
            {"messages": [{"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye"}]}]
    src = tmp_path / "chats.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _, train, test, bad = prepared(chat_config(tmp_path, source=src, test={"size": 1}))
    assert len(train) + len(test) == 2
    assert {b["line"]: b["reason"] for b in bad} == {
        1: "no user turn (or tool result) right before the assistant's final answer",
        2: "message 2 is a system turn after the conversation started; put the system prompt first",
        3: "message 1 (user) has a 'image_url' content part; only text parts are supported",
        4: "message 2 (assistant) tool_calls: a tool call without a function name",
        5: "'messages' is str; expected a list of turns",
        6: "the conversation ends with a user turn; expected the assistant's answer last (the target to learn)"}


def test_shape_switch_and_category_from_stored_completion_metadata(tmp_path):
    """data.shape forces one reading; data.columns.category is looked up in a stored completion's metadata too."""
    for name in "abc":
        (tmp_path / name).mkdir()
    with pytest.raises(DuoError, match=r"only 0 valid row\(s\) out of 16.*missing column 'instruction'"):
        prepared(chat_config(tmp_path / "a", shape="columns"))
    with pytest.raises(DuoError, match=r"only 0 valid row\(s\) out of 80.*'messages' is missing"):
        prepared(make_config(tmp_path / "b", shape="chat"))
    stored = json.loads(CHAT_LOGS.read_text().splitlines()[12])
    other = {**stored, "metadata": {"topic": "fees"}, "messages": [*stored["messages"][:1],
                                                                    {"role": "user", "content": "Any card fees?"}]}
    src = tmp_path / "c" / "stored.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in (stored, other, {**other, "metadata": {}})))
    _, train, test, bad = prepared(chat_config(tmp_path / "c", source=src, columns={"category": "topic"},
                                               test={"size": 1}))
    assert sorted(r["category"] for r in train + test) == ["cards", "fees"]
    assert [(b["line"], b["reason"]) for b in bad] == [(3, "missing column 'topic' (data.columns.category)")]


def test_system_column_and_split_fingerprint_unchanged_by_the_new_keys(tmp_path):
    """A system-prompt column feeds ``system`` and the chat turns; the new data keys at their defaults leave the
    fingerprint of splits made before them as it was (no remade split, no --force)."""
    rows = [{"q": f"Question {i}?", "a": f"Answer {i}.", "sys": "Be terse." if i % 2 else ""} for i in range(6)]
    src = tmp_path / "cols.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = make_config(tmp_path, source=src, columns={"instruction": "q", "response": "a", "system": "sys"},
                       test={"size": 2})
    _, train, test, _ = prepared(path)
    by_q = {r["instruction"]: r for r in train + test}
    assert by_q["Question 1?"]["system"] == "Be terse." and by_q["Question 1?"]["messages"][0]["role"] == "system"
    assert by_q["Question 2?"]["system"] is None and len(by_q["Question 2?"]["messages"]) == 2
    (tmp_path / "plain").mkdir()
    cfg = load_config(make_config(tmp_path / "plain", test={"size": 0.25}))
    assert cfg.data.shape == "auto" and cfg.data.columns.system is None
    split = ARTIFACTS["prepare"]
    data = split.config(cfg)["data"]
    assert "shape" not in data and set(data["columns"]) == {"instruction", "response", "category"}
    assert set(data) == {"source", "format", "split", "columns", "limit", "test"}  # the keys before the new ones
    assert split.config(load_config(path))["data"]["columns"]["system"] == "sys"


def test_a_logged_reply_as_a_message_or_as_text_is_the_target(tmp_path):
    ask = [{"role": "system", "content": BANK}, {"role": "user", "content": "Opening hours?"}]
    rows = [{"request": {"messages": ask}, "response": {"role": "assistant", "content": "Nine to five."}},
            {"messages": [ask[0], {"role": "user", "content": "Card fees?"}], "response": "None at all."}]
    src = tmp_path / "replies.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _, train, test, bad = prepared(chat_config(tmp_path, source=src, test={"size": 1}))
    assert bad == [] and sorted(r["response"] for r in train + test) == ["Nine to five.", "None at all."]
    assert {r["system"] for r in train + test} == {BANK}
