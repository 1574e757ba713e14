"""The local artifact store: atomic writes, listing, opening, manifests."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import ArtifactMissing, DuoError
from pipeline.manifest import Manifest
from pipeline.records import read_jsonl, write_jsonl
from pipeline.store import LocalStore, artifact_name, round_of


def put(store: LocalStore, name: str, rows: list[dict], **counts) -> Manifest:
    stage = name.rsplit("/", 1)[-1]
    with store.write(name) as tmp:
        write_jsonl(tmp / "data.jsonl", rows)
        m = Manifest.start(stage, name, "hash0", round_of(name))
        m.counts = counts or {"rows": len(rows)}
        m.finish(tmp).write(tmp)
    return m


def test_artifact_names():
    assert artifact_name("prepare") == "prepare"
    assert artifact_name("prepare", 3) == "prepare"
    assert artifact_name("synthesize", 2) == "round-2/synthesize"
    assert round_of("round-12/evaluate") == 12
    assert round_of("prepare") is None


def test_write_then_open_list_exists_and_manifest(tmp_path):
    store = LocalStore(tmp_path / "store")
    assert not store.exists("round-1/synthesize")
    put(store, "round-1/synthesize", [{"id": "a"}, {"id": "b"}])
    put(store, "prepare", [{"id": "p"}])
    assert store.exists("round-1/synthesize")
    folder = store.open("round-1/synthesize")
    assert [r["id"] for r in read_jsonl(folder / "data.jsonl")] == ["a", "b"]
    m = store.manifest("round-1/synthesize")
    assert (m.stage, m.round, m.counts, m.files) == ("synthesize", 1, {"rows": 2}, ["data.jsonl"])
    assert store.list() == ["prepare", "round-1/synthesize"]
    assert store.list("round-") == ["round-1/synthesize"]
    assert store.describe("prepare")["location"] == str(tmp_path / "store" / "prepare")


def test_exception_inside_write_keeps_the_earlier_artifact_and_leaves_no_temp(tmp_path):
    store = LocalStore(tmp_path)
    put(store, "round-1/infer", [{"id": "old"}])
    before = (store.open("round-1/infer") / "manifest.json").read_text()
    with pytest.raises(RuntimeError, match="stage crashed"), store.write("round-1/infer") as tmp:
        write_jsonl(tmp / "data.jsonl", [{"id": "new"}])
        Manifest.start("infer", "round-1/infer", "hash1", 1).finish(tmp).write(tmp)
        raise RuntimeError("stage crashed")
    assert (store.open("round-1/infer") / "manifest.json").read_text() == before
    assert [r["id"] for r in read_jsonl(store.open("round-1/infer") / "data.jsonl")] == ["old"]
    assert sorted(p.name for p in (tmp_path / "round-1").iterdir()) == ["infer"]


def test_crashed_first_write_leaves_no_artifact(tmp_path):
    store = LocalStore(tmp_path)
    with pytest.raises(KeyboardInterrupt), store.write("prepare") as tmp:
        (tmp / "train.jsonl").write_text('{"id": 1}\n')
        raise KeyboardInterrupt
    assert not store.exists("prepare")
    assert store.list() == []
    with pytest.raises(ArtifactMissing, match="'prepare'"):
        store.open("prepare")


def test_write_without_manifest_is_refused(tmp_path):
    store = LocalStore(tmp_path)
    with pytest.raises(DuoError, match="wrote no manifest.json"), store.write("round-2/evaluate") as tmp:
        (tmp / "scores.jsonl").write_text("")
    assert not store.exists("round-2/evaluate")
    assert not (tmp_path / "round-2" / "evaluate").exists()


def test_rewrite_replaces_the_whole_folder(tmp_path):
    store = LocalStore(tmp_path)
    with store.write("prepare") as tmp:
        (tmp / "stale.jsonl").write_text("{}\n")
        Manifest.start("prepare", "prepare", "h").finish(tmp).write(tmp)
    put(store, "prepare", [{"id": 1}])
    assert sorted(p.name for p in store.open("prepare").iterdir()) == ["data.jsonl", "manifest.json"]


def test_stray_temp_folders_and_journal_are_never_listed(tmp_path):
    store = LocalStore(tmp_path)
    put(store, "prepare", [{"id": 1}])
    for stray in (tmp_path / "round-1" / ".tmp-synthesize-deadbeef", tmp_path / ".old-prepare-cafe"):
        stray.mkdir(parents=True)
        (stray / "manifest.json").write_text(json.dumps({"stage": "x", "artifact": "x", "config_hash": "h"}))
    (store.journal_dir / "manifest.json").write_text("{}")
    assert store.list() == ["prepare"]
    assert not store.exists("round-1/synthesize")


# -- hygiene: leftovers of killed writers (issue 10, item 9) ---------------------------------------------------------

def dead_pid() -> int:
    """The pid of a process that has exited."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_next_write_removes_a_dead_writers_temp_folders_only(tmp_path):
    import os
    import time

    store = LocalStore(tmp_path)
    put(store, "round-1/infer", [{"id": "old"}])
    folder = tmp_path / "round-1"
    dead = folder / f".tmp-infer-{dead_pid()}-0123abcd"
    alive = folder / f".tmp-infer-{os.getppid()}-4567abcd"  # a writer still running (our parent)
    legacy_old, legacy_new = folder / ".tmp-infer-89abcdef", folder / ".old-infer-fedcba98"
    for path in (dead, alive, legacy_old, legacy_new):
        path.mkdir()
        (path / "big.bin").write_bytes(b"0" * 1000)
    os.utime(legacy_old, (time.time() - 7200, time.time() - 7200))
    put(store, "round-1/infer", [{"id": "new"}])
    assert sorted(p.name for p in folder.iterdir()) == sorted(["infer", alive.name, legacy_new.name])
    assert [r["id"] for r in read_jsonl(store.open("round-1/infer") / "data.jsonl")] == ["new"]


def test_a_kill_between_the_two_renames_loses_nothing(tmp_path):
    import subprocess
    import sys

    child = f"""
import os, sys
from pipeline.manifest import Manifest
from pipeline.records import write_jsonl
from pipeline.store import LocalStore
from pipeline.store import base

def put(store, rows):
    with store.write("round-1/infer") as tmp:
        write_jsonl(tmp / "data.jsonl", rows)
        Manifest.start("infer", "round-1/infer", "h", 1).finish(tmp).write(tmp)

store = LocalStore({str(tmp_path)!r})
put(store, [{{"id": "old"}}])
real = os.replace
def replace(src, dst):
    real(src, dst)
    if str(dst).rsplit("/", 1)[-1].startswith(".old-"):
        os._exit(9)  # killed right after moving the old copy aside, before moving the new one in
base.os.replace = replace
put(store, [{{"id": "new"}}])
"""
    done = subprocess.run([sys.executable, "-c", child], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 9, done.stderr
    folder = tmp_path / "round-1"
    assert not (folder / "infer").exists()  # the moment the old swap lost the artifact
    assert sorted(p.name.split("-")[0] for p in folder.iterdir()) == [".old", ".tmp"]
    store = LocalStore(tmp_path)  # opening the store puts the previous copy back
    assert store.exists("round-1/infer")
    assert [r["id"] for r in read_jsonl(store.open("round-1/infer") / "data.jsonl")] == ["old"]
    assert store.list() == ["round-1/infer"]
    put(store, "round-1/infer", [{"id": "again"}])  # and the next write clears the dead writer's temp folder
    assert sorted(p.name for p in folder.iterdir()) == ["infer"]
