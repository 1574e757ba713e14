"""Issue #11: ``duo finetune`` on 2 CPU processes (accelerate launch, gloo) trains once, writes one artifact once,
shaped like a one-process run, and publishes its outputs once."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from pipeline.cli import main
from pipeline.store import LocalStore
from tests.model_fixtures import make_prepare, qa_rows

STEPS = 3


def write_config(tmp_path: Path, model_dir: Path, **launch) -> Path:
    doc = {"task": {"name": "tiny"}, "data": {"source": "unused.jsonl"}, "student": {"model": str(model_dir)},
           "finetune": {"sft": {"max_steps": STEPS, "per_device_train_batch_size": 2, "max_length": 128,
                                "learning_rate": 1e-2, "warmup_steps": 0}, "launch": launch},
           "store": {"path": "store"}}
    path = tmp_path / "duo.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def finetune_once(tmp_path: Path, model_dir: Path, monkeypatch, capfd, processes: str | None) -> dict:
    """Run ``duo finetune`` in a fresh task folder; what it printed, output and stored."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = write_config(tmp_path, model_dir)
    store = LocalStore(tmp_path / "store")
    make_prepare(store, qa_rows(16), qa_rows(2, seed=1, prefix="e"))
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "gh_output"))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "gh_summary"))
    if processes:
        monkeypatch.setenv("DUO_PROCESSES", processes)
    else:
        monkeypatch.delenv("DUO_PROCESSES", raising=False)
    capfd.readouterr()
    code = main(["finetune", str(config), "--round", "1"])
    out, err = capfd.readouterr()
    log = (store.open("round-1/finetune") / "train_log.jsonl").read_text().splitlines()
    return {"code": code, "out": out, "err": err, "store": store, "manifest": store.manifest("round-1/finetune"),
            "outputs": (tmp_path / "gh_output").read_text().splitlines(),
            "summary": (tmp_path / "gh_summary").read_text(), "log": [json.loads(line) for line in log]}


def test_two_cpu_processes_write_one_artifact_once(tmp_path, tiny_model_dir, monkeypatch, capfd):
    one = finetune_once(tmp_path / "one", tiny_model_dir, monkeypatch, capfd, None)
    two = finetune_once(tmp_path / "two", tiny_model_dir, monkeypatch, capfd, "2")
    assert one["code"] == 0 and two["code"] == 0, two["err"][-3000:]
    assert "launching 2 processes" in two["out"] and "launching" not in one["out"]

    # One artifact, one manifest of the same shape, the process count recorded.
    m1, m2 = one["manifest"], two["manifest"]
    assert m2.extra["num_processes"] == 2 and m1.extra["num_processes"] == 1
    assert set(m2.extra) == set(m1.extra) and set(m2.counts) == set(m1.counts)
    assert sorted(vars(m2)) == sorted(vars(m1))
    assert sorted(m2.files) == sorted(m1.files)
    assert m2.counts["steps"] == STEPS and m2.counts["train_rows"] == 16
    store = two["store"]
    assert store.list("round-1") == ["round-1/finetune"]
    leftovers = [p.name for p in store.root.rglob("*") if p.name.startswith((".tmp-", ".work-"))]
    assert leftovers == []  # no second rank's staging or trainer folder is left behind
    assert not list(store.root.glob(".locks/*.json"))  # the parent's lock is released; no rank left one behind

    # Trained and written once: each step logged once, the summary and the outputs once.
    assert [r["step"] for r in two["log"] if "loss" in r] == list(range(1, STEPS + 1))
    assert two["out"].count("finetune round 1:") == 1
    assert two["summary"].count("### finetune, round 1") == 1
    assert [line.split("=", 1)[0] for line in two["outputs"]].count("artifact") == 1
    assert sorted(line.split("=", 1)[0] for line in two["outputs"]) == \
        sorted(line.split("=", 1)[0] for line in one["outputs"])
    adapter = store.open("round-1/finetune") / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()


def test_two_processes_on_the_hub_store_commit_the_artifact_once(tmp_path, tiny_model_dir, monkeypatch, capfd,
                                                                 fake_hub):
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    config = write_config(tmp_path, tiny_model_dir)
    doc = yaml.safe_load(config.read_text())
    doc["store"] = {"kind": "hub", "namespace": "duo-org", "path": "store"}
    config.write_text(yaml.safe_dump(doc))
    from pipeline.config import load_config
    from pipeline.store import open_store

    store = open_store(load_config(config))
    make_prepare(store, qa_rows(16), qa_rows(2, seed=1, prefix="e"))
    fake_hub.log.clear()
    monkeypatch.setenv("DUO_PROCESSES", "2")
    # a renewal of the lock on a slow machine would be one more commit: none within this test
    monkeypatch.setenv("DUO_LOCK_TTL_S", "10800")
    monkeypatch.setenv("DUO_LOCK_HEARTBEAT_S", "3600")
    assert main(["finetune", str(config), "--round", "1"]) == 0, capfd.readouterr().err[-3000:]
    out = capfd.readouterr().out
    writes = [(e["method"], e["path"]) for e in fake_hub.log if e["method"] in ("POST", "PUT") and e["status"] < 300]
    commits = [path for method, path in writes if "/commit/" in path]
    # The adapter is committed once, its round branch made once; the dataset repo sees only the lock, taken once
    # by the duo process that launched the two ranks and released once.
    assert [p for p in commits if "/models/" in p] == ["/api/models/duo-org/tiny-duo-adapter/commit/main"]
    assert sum(1 for _, p in writes if p.endswith("/branch/round-1")) == 1
    assert len([p for p in commits if "/datasets/" in p]) == 2, writes
    assert out.count("finetune round 1:") == 1
    assert store.manifest("round-1/finetune").extra["num_processes"] == 2
