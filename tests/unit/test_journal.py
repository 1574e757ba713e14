"""The journal survives torn lines, keeps concurrent writers' lines whole, and keys on everything that matters."""

from __future__ import annotations

import json
import multiprocessing
import threading

from pipeline.llm.journal import Journal, journal_key, read_lines


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


# -- issue 10: segments in a registered folder, the flusher, the ledger


def test_a_registered_folder_gets_segments_read_together_and_never_rewritten(tmp_path):
    from pipeline.llm.journal.flush import Flusher, segmented

    folder = tmp_path / "journal" / "synthesize" / "round-1"
    pushed = []
    flusher = Flusher(folder, lambda files: pushed.append({p.name: len(d) for p, d in files.items()}),
                      flush_s=3600, flush_every=10**6)
    segmented(folder, flusher)
    a = Journal(folder / "synthesize.jsonl")
    a.put("k1", text="one")
    assert not (folder / "synthesize.jsonl").exists() and len(list(folder.glob("part-*.jsonl"))) == 1
    assert flusher.flush() == 1 and flusher.flush() == 0  # nothing new: no second push
    a.put("k2", text="two")  # after a flush: a fresh segment, the pushed one stays as pushed
    b = Journal(folder / "other.jsonl")  # another journal of the same folder reads every segment
    assert {"k1", "k2"} <= set(b._entries) and len(list(folder.glob("part-*.jsonl"))) == 2
    assert flusher.flush() == 1 and [len(p) for p in pushed] == [1, 1]


def test_ledger_counts_replies_pending_sends_and_legacy_answers(tmp_path):
    from pipeline.llm.journal import read_ledger

    new = Journal(tmp_path / "new.jsonl")
    done = new.sent("m", 10, 100, 0.5)
    new.paid(done, 8, 20, 0.25)
    new.put("k1", text="x", usage={"requests": 1, "cost_usd": 0.25})  # its cost is the paid line's, not twice
    failed = new.sent("m", 10, 100, 0.5)
    new.paid(failed, 0, 0, 0.0, error="500")
    new.sent("m", 10, 100, 0.5)  # killed before the reply came
    old = Journal(tmp_path / "old.jsonl")  # a journal written before the ledger lines existed
    old.put("k2", text="y", usage={"requests": 2, "input_tokens": 5, "output_tokens": 6, "cost_usd": 0.125})
    ledger = read_ledger([tmp_path / "new.jsonl", tmp_path / "old.jsonl"])
    assert ledger.cost_usd == 0.375 and ledger.requests == 3 and ledger.answers == 2
    assert ledger.pending == 1 and ledger.unknown_at_most_usd == 0.5
    assert (ledger.input_tokens, ledger.output_tokens) == (13, 26)


def _put_then_die(path):
    import os
    import signal

    Journal(path).put("k1", text="answered")
    os.kill(os.getpid(), signal.SIGKILL)  # no exit handlers, no final fsync


def test_a_line_written_survives_its_process_being_killed(tmp_path):
    """Issue 11: lines are fsynced in groups, not one by one; a killed process must still lose none."""
    path = tmp_path / "answers.jsonl"
    proc = multiprocessing.get_context("fork").Process(target=_put_then_die, args=(path,))
    proc.start()
    proc.join()
    assert proc.exitcode == -9 and Journal(path).get("k1")["text"] == "answered"


def test_a_flush_pushes_only_new_segments_however_many_there_are(tmp_path):
    """Issue 11: a flush copies what is new, not the whole journal again."""
    from pipeline.llm.journal.flush import Flusher, segmented

    folder = tmp_path / "journal" / "synthesize" / "round-1"
    pushed = []
    flusher = Flusher(folder, lambda files: pushed.append(sorted(len(d) for d in files.values())),
                      flush_s=3600, flush_every=10**6)
    segmented(folder, flusher)
    j = Journal(folder / "synthesize.jsonl")
    for i in range(20):
        j.put(f"k{i}", text="x" * (100 + i))
        assert flusher.flush() == 1
    assert len(list(folder.glob("part-*.jsonl"))) == 20 and all(len(p) == 1 for p in pushed)
    assert len(Journal(folder / "again.jsonl")) == 20


def test_keyed_merges_the_request_params_over_the_services_and_keys_on_them():
    from types import SimpleNamespace

    from pipeline.llm import Request
    from pipeline.llm.journal import keyed

    svc = SimpleNamespace(provider="openai", model="gpt-4o", params={"temperature": 0, "max_tokens": 50})
    req = Request(key="r1", messages=[{"role": "user", "content": "hi"}], params={"temperature": 1}, repeat=2)
    params, key = keyed(svc, req)
    assert params == {"temperature": 1, "max_tokens": 50}
    assert key == journal_key("openai", "gpt-4o", params, req.messages, None, 2)


def test_writing_a_stages_artifact_releases_its_journal_though_the_store_imports_no_journal(tmp_path):
    """The store calls its ``after_write`` hooks; opening a journal registers the one that flushes it."""
    from types import SimpleNamespace

    from pipeline.llm.journal.flush import flusher_of
    from pipeline.llm.journal.sync import close_journal, open_journal
    from pipeline.manifest import Manifest
    from pipeline.store import LocalStore, Store

    store = LocalStore(tmp_path / "store")
    cfg = SimpleNamespace(journal=SimpleNamespace(flush_s=3600, flush_every=10, commits_per_hour=40))
    path = open_journal(store, cfg, "synthesize", 1)
    assert close_journal in Store.after_write and flusher_of(path.parent) is not None
    Journal(path).put("k1", text="one")
    with store.write("round-1/synthesize") as tmp:
        Manifest.start("synthesize", "round-1/synthesize", "hash0", 1).finish(tmp).write(tmp)
    assert flusher_of(path.parent) is None  # released: its stage is done
    assert [e["key"] for p in path.parent.glob("part-*.jsonl") for e in read_lines(p)[0]] == ["k1"]
