"""Live traffic back into the loop (issue 21, part 5): the captured traffic folder and OpenAI's stored completions
(listed through the official SDK from the fake OpenAI server) as ``data.source`` for ``duo prepare``, and
``duo monitor`` dispatching a new round on drift (fake GitHub) and not otherwise."""

from __future__ import annotations

import json

import openai
import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.records import read_jsonl
from pipeline.store import open_store
from tests.integration.test_canary import BAD, make_task, traffic_of
from tests.round_artifacts import put
from tests.traffic_capture import SYSTEM, questions, write_capture


def prepared(config) -> list[dict]:
    folder = open_store(load_config(config)).local_path("prepare")
    return read_jsonl(folder / "train.jsonl") + read_jsonl(folder / "test.jsonl")


def test_captured_traffic_becomes_the_next_rounds_data(tmp_path, capsys):
    config = make_task(tmp_path)
    folder = tmp_path / "captured"
    write_capture(folder, [(q, a, BAD) for q, a in questions(40)], student_served=10, student_errors=3)
    text = config.read_text().replace("data: {source: data.jsonl}", f"data: {{source: {folder}}}")
    config.write_text(text, encoding="utf-8")
    assert main(["prepare", str(config)]) == 0
    rows = prepared(config)
    # 30 service answers with a shadow + 3 fallbacks; the student's 7 served answers and 3 errors are not teachers
    assert len(rows) == 33
    assert all(r["system"] == SYSTEM and r["messages"][0] == {"role": "system", "content": SYSTEM} for r in rows)
    assert all(r["response"].startswith("The capital city of") and r["response"] != BAD for r in rows)
    m = open_store(load_config(config)).manifest("prepare")
    assert m.extra["format"] == "traffic" and m.counts["with_system"] == 33
    assert "33 rows with a system prompt" in capsys.readouterr().out


def test_stored_completions_listed_through_the_sdk_become_data(tmp_path, fake_openai):
    client = openai.OpenAI(api_key=fake_openai.api_key, base_url=fake_openai.url + "/v1")
    for i, (q, _) in enumerate(questions(27)):
        app = "support" if i < 25 else "other"
        client.chat.completions.create(model="gpt-4o-mini", store=True, metadata={"app": app},
                                       messages=[{"role": "developer", "content": SYSTEM},
                                                 {"role": "user", "content": q}])
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "not stored"}])
    config = make_task(tmp_path)
    text = config.read_text().replace("data: {source: data.jsonl}",
                                      "data: {source: 'openai:stored-completions', metadata: {app: support}}")
    config.write_text(text, encoding="utf-8")
    from pipeline.stages.validate import data_problems

    assert data_problems(load_config(config)) == []  # duo validate lists nothing: no network call
    assert not fake_openai.requests("GET", "/v1/chat/completions")
    assert main(["prepare", str(config)]) == 0
    rows = prepared(config)
    assert len(rows) == 25 and all(r["system"] == SYSTEM for r in rows)
    assert {r["response"] for r in rows} == {q for q, _ in questions(25)}  # the fake echoes the question
    pages = fake_openai.requests("GET", "/v1/chat/completions")
    pages = [p for p in pages if p["path"] == "/v1/chat/completions"]
    assert len(pages) == 2 and pages[0]["query"]["metadata[app]"] == "support" and "after" in pages[1]["query"]
    assert len([p for p in fake_openai.requests("GET") if p["path"].endswith("/messages")]) == 25
    m = open_store(load_config(config)).manifest("prepare")
    assert m.extra["format"] == "stored_completions" and m.extra["source_sha256"]


def test_the_fake_pages_stored_messages_as_openai_does(fake_openai):
    client = openai.OpenAI(api_key=fake_openai.api_key, base_url=fake_openai.url + "/v1")
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(25)]
    done = client.chat.completions.create(model="gpt-4o", store=True, messages=turns)
    page = client.chat.completions.messages.list(done.id, limit=10)
    assert [m.content for m in page.data] == [f"turn {i}" for i in range(10)] and page.has_more
    assert [m.content for m in client.chat.completions.messages.list(done.id)] == [t["content"] for t in turns]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.messages.list("chatcmpl-missing")


@pytest.fixture
def monitored(tmp_path, monkeypatch, fake_github):
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "gh_output"))
    config = make_task(tmp_path, min_prompts=30)
    put(open_store(load_config(config)), "promote", 1, {"promotion.json": {"round": 1, "status": "promoted"}})
    return config


def test_monitor_dispatches_a_new_round_once_on_drift(monitored, fake_github, tmp_path, capsys):
    write_capture(traffic_of(monitored), [(q, a, BAD) for q, a in questions(40)])
    assert main(["monitor", str(monitored), "--dispatch"]) == 0
    assert fake_github.dispatches == [{"workflow": "round.yml", "ref": "main", "inputs": {
        "config": "tasks/bot/duo.yaml", "round": "2", "samples": "200", "dry-run": "false"}}]
    assert "drift: the promoted student fell behind the service" in capsys.readouterr().out
    record = json.loads((open_store(load_config(monitored)).local_path("monitor/round-2") / "decision.json")
                        .read_text())
    assert record["evidence"]["change"] == "worse" and record["evidence"]["diff"]["ci_high"] < 0
    assert main(["monitor", str(monitored), "--dispatch"]) == 0  # the next scheduled run: nothing more
    assert len(fake_github.dispatches) == 1
    out = dict(line.split("=", 1) for line in (tmp_path / "gh_output").read_text().splitlines() if "=" in line)
    assert (out["drift"], out["next-round"]) == ("true", "2")


def test_monitor_does_nothing_without_drift(monitored, fake_github):
    write_capture(traffic_of(monitored), [(q, a, a) for q, a in questions(40)])
    assert main(["monitor", str(monitored), "--dispatch"]) == 0
    assert fake_github.dispatches == [] and not fake_github.requests("POST")
    assert not open_store(load_config(monitored)).list("monitor/")
