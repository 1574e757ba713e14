"""Issue #11: ``duo infer`` on 2 CPU processes (accelerate launch, gloo) shards the test prompts, gathers them on
rank 0 and writes the same answers, in the same order, once."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.cli import main
from pipeline.records import read_jsonl
from pipeline.store import LocalStore
from tests.model_fixtures import make_prepare, qa_rows

N_TEST = 7  # odd: the two shards differ in size


def infer_once(tmp_path: Path, model_dir: Path, monkeypatch, capfd, processes: int) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    doc = {"task": {"name": "tiny"}, "data": {"source": "unused.jsonl"}, "student": {"model": str(model_dir)},
           "infer": {"batch_size": 2, "max_new_tokens": 6, "launch": {"num_processes": processes}},
           "store": {"path": "store"}}
    (tmp_path / "duo.yaml").write_text(yaml.safe_dump(doc))
    store = LocalStore(tmp_path / "store")
    make_prepare(store, qa_rows(4), qa_rows(N_TEST, seed=1, prefix="e"))
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "gh_output"))
    monkeypatch.delenv("DUO_PROCESSES", raising=False)
    capfd.readouterr()
    code = main(["infer", str(tmp_path / "duo.yaml"), "--round", "0"])
    out, err = capfd.readouterr()
    return {"code": code, "out": out, "err": err, "manifest": store.manifest("round-0/infer"),
            "answers": read_jsonl(store.open("round-0/infer") / "answers.jsonl"),
            "outputs": (tmp_path / "gh_output").read_text().splitlines(), "store": store}


def test_two_processes_answer_every_prompt_once_in_order(tmp_path, tiny_model_dir, monkeypatch, capfd):
    one = infer_once(tmp_path / "one", tiny_model_dir, monkeypatch, capfd, 1)
    two = infer_once(tmp_path / "two", tiny_model_dir, monkeypatch, capfd, 2)
    assert one["code"] == 0 and two["code"] == 0, two["err"][-3000:]
    assert "launching 2 processes" in two["out"]
    # Greedy answers do not depend on which process made them: the gathered set is the one-process set.
    assert [a["id"] for a in two["answers"]] == [a["id"] for a in one["answers"]] == [f"e{i}" for i in range(N_TEST)]
    assert [a["answer"] for a in two["answers"]] == [a["answer"] for a in one["answers"]]
    # Why each answer stopped travels with it through the gather (issue #13).
    reasons = [a["finish_reason"] for a in two["answers"]]
    assert reasons == [a["finish_reason"] for a in one["answers"]] and set(reasons) <= {"stop", "length"}
    assert two["manifest"].counts["truncated_answers"] == reasons.count("length")
    m1, m2 = one["manifest"], two["manifest"]
    assert (m1.extra["num_processes"], m2.extra["num_processes"]) == (1, 2)
    assert m2.counts == m1.counts and set(m2.extra) == set(m1.extra)
    assert m2.config_hash == m1.config_hash  # infer.launch says how many processes answer, not what they answer
    assert two["out"].count("infer round 0") == 1
    assert [line.split("=", 1)[0] for line in two["outputs"]].count("artifact") == 1
    assert not [p for p in two["store"].root.rglob(".tmp-*")]
