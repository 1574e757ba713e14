"""duo against a real OpenAI-compatible server: llama.cpp's llama-server with SmolLM2-135M (tests/llama_server.py).

The README promises that any OpenAI-compatible server can be the service LLM; the fakes accept whatever we taught
them, this server does not. The model's words are never asserted: only shapes, counts, the journal, the manifest and
the server's own counters (``/metrics``). Issue #14.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.config import build_config, load_config
from pipeline.judging.absolute import judge_absolute
from pipeline.judging.pairwise import judge_pairwise
from pipeline.llm import Engine, Request
from pipeline.llm.base import FatalError
from pipeline.records import read_jsonl
from pipeline.stages import prepare
from pipeline.store import LocalStore, open_store
from tests.fakes.openai_fixtures import service_cfg
from tests.llama_server import LlamaServer, server_parts

pytestmark = pytest.mark.real_server

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "alpaca_eval_sample.jsonl"
CUT = "reply cut at the max-tokens limit"
DECODED = "llamacpp:tokens_predicted_total"  # tokens the server generated, over its whole life


def service(server: LlamaServer, **overrides) -> dict:
    """A ``service.*`` block pointing at the server, as a user would write it (greedy: temperature 0)."""
    return {"provider": "openai", "model": server.model, "base_url": server.base_url, "rpm": None,
            "concurrency": 2, "max_retries": 1, "schema_retries": 1, "timeout_s": 120,
            "params": {"temperature": 0, "max_tokens": 200}, **overrides}


def judge_config(tmp_path: Path, server: LlamaServer, **svc):
    doc = {"task": {"name": "demo"}, "data": {"source": "data.jsonl"}, "student": {"model": "tiny"},
           "store": {"path": str(tmp_path / "store")},
           "evaluate": {"judge_repeats": 1, "metrics": ["similarity", "precision"]},
           "service": {"judge": service(server, **svc)}}
    return build_config(doc, base_dir=tmp_path)


def rows(answers: dict[str, str]) -> list[dict]:
    return [{"_key": k, "id": k, "instruction": "What is the capital of France?", "category": None,
             "reference": "The capital of France is Paris.", "answer": a} for k, a in answers.items()]


def test_synthesize_through_the_server_and_rerun_reuses_the_journal(tmp_path, real_server, capsys):
    doc = {"task": {"name": "demo", "description": "helpful answers to general-assistant questions"},
           "data": {"source": str(SAMPLE), "test": {"size": 0.25, "seed": 3},
                    "columns": {"instruction": "instruction", "response": "output", "category": "dataset"}},
           "student": {"model": "m"},
           "service": {"synthesize": service(real_server, concurrency=1, params={"temperature": 0, "max_tokens": 300})},
           "synthesize": {"samples": 2, "pairs_per_request": 2, "max_attempts": 2, "seed": 1}}
    path = tmp_path / "duo.yaml"
    path.write_text(yaml.safe_dump(doc))
    cfg = load_config(path)
    store = open_store(cfg)
    prepare.run(cfg, store)

    before = real_server.metrics()[DECODED]
    assert main(["synthesize", str(path), "--round", "1"]) == 0
    assert "pairs from" in capsys.readouterr().out
    folder = store.open("round-1/synthesize")
    m = json.loads((folder / "manifest.json").read_text())
    data, removed = read_jsonl(folder / "data.jsonl"), read_jsonl(folder / "removed.jsonl")
    failures = read_jsonl(folder / "failures.jsonl")
    c = m["counts"]
    assert c["requests"] >= 1 and c["kept"] == len(data) <= 2 and c["failures"] == len(failures)
    assert c["received"] == len(data) + len(removed)
    assert all(r["generator"] == real_server.model and r["id"].startswith("syn-r1-") and r["instruction"].strip()
               and r["messages"][1] == {"role": "assistant", "content": r["response"]} for r in data)
    # the grammar the server built from the json_schema response_format: every reply parsed unless it was cut
    assert all(CUT in f["error"] and f["raw"].lstrip().startswith("{") for f in failures), failures
    # usage is the server's own token count (re-asks included); a local server costs nothing
    assert m["usage"]["output_tokens"] == real_server.metrics()[DECODED] - before > 0
    assert m["usage"]["input_tokens"] > 0 and m["usage"]["cost_usd"] == 0
    assert m["models"]["provider"] == "openai"

    # the same command again: the artifact is reused as it is, and the server generates nothing
    decoded = real_server.metrics()[DECODED]
    assert main(["synthesize", str(path), "--round", "1"]) == 0
    assert real_server.metrics()[DECODED] == decoded

    # forced: every answer comes from the journal; only a failed request (a cut reply, never journaled) is asked
    # again, and the tokens the server generated for it are exactly the ones duo counted
    assert main(["synthesize", str(path), "--round", "1", "--force"]) == 0
    m2 = json.loads((store.open("round-1/synthesize") / "manifest.json").read_text())
    assert m2["usage"]["cached"] == m["usage"]["requests"] - c["failures"]
    assert real_server.metrics()[DECODED] - decoded == m2["usage"]["output_tokens"]
    if c["failures"] == 0:
        assert m2["usage"]["output_tokens"] == 0 and read_jsonl(store.open("round-1/synthesize") / "data.jsonl") == data


def test_judge_with_json_schema_and_reask_of_a_cut_reply(tmp_path, real_server):
    items = rows({"t1": "Paris is the capital of France.", "t2": "I think it is Lyon."})
    store = LocalStore(tmp_path / "store")

    # enough tokens: each reply is a verdict (scores within 1-100: the schema's bounds reached the grammar)
    cfg = judge_config(tmp_path, real_server)
    out = judge_absolute(cfg, store, cfg.service.judge, items, journal=tmp_path / "judge.jsonl",
                         artifact_name="round-1/evaluate")
    assert sum(len(v) for v in out.verdicts.values()) + len(out.failures) == 2
    for verdict in (v for vs in out.verdicts.values() for v in vs):
        assert 1 <= verdict["similarity"] <= 100 and 1 <= verdict["precision"] <= 100
        assert isinstance(verdict["similarity_reason"], str)
    assert all(CUT in f["error"] for f in out.failures)

    # the pairwise schema (an enum winner, the reason first): one row asked in both orders
    pair = judge_pairwise(cfg, store, cfg.service.judge, items[:1], journal=tmp_path / "pair.jsonl",
                          artifact_name="round-1/pairwise")
    verdicts = pair.rows["t1"]["pairwise"]
    assert len(verdicts) + len(pair.failures) == 2 and all(CUT in f["error"] for f in pair.failures)
    assert all(v["position"] in ("A", "B", "tie") and v["winner"] in ("student", "service", "tie") for v in verdicts)

    # 12 tokens cannot hold a verdict: each reply is cut, re-asked once, cut again, then recorded with its text
    before = real_server.metrics()[DECODED]
    cfg = judge_config(tmp_path, real_server, params={"temperature": 0, "max_tokens": 12})
    out = judge_absolute(cfg, store, cfg.service.judge, items, journal=tmp_path / "cut.jsonl",
                         artifact_name="round-1/evaluate")
    assert out.verdicts == {"t1": [], "t2": []} and len(out.failures) == 2
    for f in out.failures:
        assert f["attempts"] == 2 and CUT in f["error"] and f["error"].startswith("reply does not match the schema")
        assert f["raw"].lstrip().startswith("{") and "\n" not in f["error"]
    # the server generated exactly 2 items x 2 asks x 12 tokens, and duo counted the same tokens
    assert real_server.metrics()[DECODED] - before == out.usage["output_tokens"] == 2 * 2 * 12

    # a rerun asks again only what failed: the same two items, twice each
    before = real_server.metrics()[DECODED]
    again = judge_absolute(cfg, store, cfg.service.judge, items, journal=tmp_path / "cut.jsonl",
                           artifact_name="round-1/evaluate")
    assert len(again.failures) == 2 and real_server.metrics()[DECODED] - before == 2 * 2 * 12


def test_prompt_longer_than_the_context_is_one_failure_not_a_crash_or_retry(tmp_path, real_server):
    long = " ".join(["Paris is the capital and largest city of France."] * 1500)  # ~13k tokens > the context
    status, body = real_server.chat({"model": real_server.model, "max_tokens": 8,
                                     "messages": [{"role": "user", "content": long}]})
    assert status == 400 and body["error"]["type"] == "exceed_context_size_error"  # the shape duo meets

    cfg = judge_config(tmp_path, real_server, max_retries=3)
    store = LocalStore(tmp_path / "store")
    before = real_server.metrics()[DECODED]
    out = judge_absolute(cfg, store, cfg.service.judge, rows({"long": long, "short": "Paris."}),
                         journal=tmp_path / "judge.jsonl", artifact_name="round-1/evaluate")
    (failure,) = [f for f in out.failures if f["id"] == "long"]
    assert failure["attempts"] == 1 and "HTTP 400" in failure["error"] and "\n" not in failure["error"]
    assert failure["raw"] is None and out.verdicts["long"] == []
    assert len(out.verdicts["short"]) + len([f for f in out.failures if f["id"] == "short"]) == 1
    assert real_server.metrics()[DECODED] > before  # the other item was answered


def test_wrong_key_stops_the_run_with_one_line(tmp_path, real_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "not-the-key")
    cfg = judge_config(tmp_path, real_server)
    engine = Engine(cfg.service.judge, progress=False)
    with pytest.raises(FatalError, match="HTTP 401") as exc:
        engine.run([Request(key="k", messages=[{"role": "user", "content": "Hi"}])])
    assert "\n" not in str(exc.value)


def test_request_sent_before_the_server_is_up_is_retried_until_answered(tmp_path, monkeypatch):
    binary, model = server_parts()
    server = LlamaServer(binary, model, tmp_path / "server.log", parallel=1)
    monkeypatch.setenv("OPENAI_API_KEY", server.api_key)
    svc = service_cfg("openai", server.model, base_url=server.base_url, rpm=None, max_retries=60, timeout_s=60,
                      params={"max_tokens": 4})
    starter = threading.Timer(1.0, server.start, kwargs={"wait": False})  # the first sends meet a closed port
    starter.start()
    try:
        # refused connections, then 503 "Loading model" while it loads: retried until the server answers
        (res,) = Engine(svc, backoff_base=0.1, backoff_cap=1.0, progress=False).run(
            [Request(key="k", messages=[{"role": "user", "content": "Hi"}])])
        assert res.ok and res.attempts >= 2 and res.usage["output_tokens"] >= 1
    finally:
        starter.join()
        server.stop()
