"""The journal survives torn lines, keeps concurrent writers' lines whole, and keys on everything that matters."""

from __future__ import annotations

import json
import multiprocessing
import threading

from pipeline.llm.journal import Journal, journal_key


def test_put_then_reload(tmp_path):
    path = tmp_path / "j" / "answers.jsonl"
    j = Journal(path)
    j.put("k1", text="hello", data={"a": 1}, usage={"requests": 1})
    again = Journal(path)
    assert len(again) == 1 and again.get("k1")["data"] == {"a": 1}
    assert again.get("missing") is None


def test_torn_last_line_is_skipped_and_the_next_entry_starts_fresh(tmp_path):
    path = tmp_path / "answers.jsonl"
    Journal(path).put("k1", text="one")
    with path.open("a") as f:
        f.write('{"key": "k2", "text": "tw')  # a writer killed mid-line
    j = Journal(path)
    assert len(j) == 1 and j.skipped_lines == 1
    j.put("k3", text="three")
    reloaded = Journal(path)
    assert set(reloaded._entries) == {"k1", "k3"} and reloaded.skipped_lines == 1


def _write_many(path, prefix, n):
    j = Journal(path)
    for i in range(n):
        j.put(f"{prefix}-{i}", text="x" * 2000)


def test_concurrent_writers_threads_and_processes(tmp_path):
    path = tmp_path / "answers.jsonl"
    procs = [multiprocessing.get_context("fork").Process(target=_write_many, args=(path, f"p{n}", 30))
             for n in range(3)]
    threads = [threading.Thread(target=_write_many, args=(path, f"t{n}", 30)) for n in range(3)]
    for w in procs + threads:
        w.start()
    for w in procs + threads:
        w.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 180
    assert all(json.loads(line)["text"] == "x" * 2000 for line in lines)
    assert len(Journal(path)) == 180


def test_key_depends_on_every_part():
    base = ("openai", "gpt-4o", {"temperature": 0}, [{"role": "user", "content": "hi"}], {"type": "object"}, 0)
    keys = {journal_key(*base)}
    for i, other in enumerate(["gemini", "gpt-4o-mini", {"temperature": 1}, [{"role": "user", "content": "ho"}],
                               None, 1]):
        changed = list(base)
        changed[i] = other
        keys.add(journal_key(*changed))
    assert len(keys) == 7
    assert journal_key(*base) == journal_key("openai", "gpt-4o", {"temperature": 0},
                                             [{"content": "hi", "role": "user"}], {"type": "object"}, 0)
