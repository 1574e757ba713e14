"""Issue 13: personal data planted in the seeds and the test rows never reaches a service LLM.

Synthesis (fake OpenAI) and evaluation (fake OpenAI with the pairwise judge, fake Gemini) run through the real SDKs;
every request body the fakes logged is searched for the planted values, and the manifests count what was scrubbed.
"""

import json
import re
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.manifest import Manifest
from pipeline.records import read_jsonl, write_jsonl
from pipeline.stages import evaluate, prepare, synthesize
from pipeline.store import open_store

pytest.importorskip("presidio_analyzer")
ROWS = 16


def luhn(prefix: str) -> str:
    """``prefix`` + its Luhn check digit: a card number Presidio's checksum accepts."""
    digits = [int(d) for d in prefix][::-1]
    total = sum(d if i % 2 else (2 * d if 2 * d < 10 else 2 * d - 9) for i, d in enumerate(digits))
    return prefix + str((10 - total % 10) % 10)


def planted(i: int) -> dict:
    card = luhn(f"411111111111{i:03d}")
    return {"email": f"customer{i}@example.com", "phone": f"+1 415-555-01{10 + i}",
            "card": f"{card[:4]} {card[4:8]} {card[8:12]} {card[12:]}",
            "key": f"sk-proj-T3stKey{i:04d}abcdefghijklmnopqrstuv"}


def make_config(tmp_path: Path) -> Path:
    data = tmp_path / "data.jsonl"
    with data.open("w", encoding="utf-8") as f:
        for i in range(ROWS):
            p = planted(i)
            f.write(json.dumps({
                "instruction": f"Write to {p['email']} (phone {p['phone']}) about order {i}: why was it late?",
                "output": f"Dear customer, order {i} was late because of the weather; we refunded card {p['card']}. "
                          f"Your integration key {p['key']} still works. Reply to this mail with any question.",
                "dataset": "orders" if i % 2 else "billing"}) + "\n")
    doc = {"task": {"name": "pii", "description": "customer support replies"},
           "data": {"source": str(data), "test": {"size": 4, "seed": 1},
                    "columns": {"instruction": "instruction", "response": "output", "category": "dataset"}},
           "student": {"model": "m"},
           "service": {"synthesize": {"provider": "openai", "model": "gpt-4o", "rpm": None, "concurrency": 2,
                                      "price_input_per_1m": 5.0, "price_output_per_1m": 15.0, "max_retries": 1,
                                      "timeout_s": 10},
                       "judge": {"provider": "openai", "model": "gpt-4o", "rpm": None, "concurrency": 2,
                                 "price_input_per_1m": 2.5, "price_output_per_1m": 10.0, "max_retries": 1,
                                 "timeout_s": 10}},
           "synthesize": {"samples": 6, "pairs_per_request": 3, "seed": 2},
           "evaluate": {"judge_repeats": 1, "metrics": ["similarity", "precision", "win_rate"], "pairwise": True,
                        "bootstrap_samples": 200}}
    path = tmp_path / "duo.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def put_answers(store, round_no: int) -> None:
    """``round-N/infer`` by hand: the student's answers repeat the test row's personal data."""
    test = read_jsonl(store.open("prepare") / "test.jsonl")
    name = f"round-{round_no}/infer"
    with store.write(name) as folder:
        write_jsonl(folder / "answers.jsonl", [
            {"id": r["id"], "instruction": r["instruction"], "reference": r["response"], "category": r["category"],
             "answer": f"Sorry about order {r['id']}. " + r["response"][-120:], "model": "m", "adapter": None,
             "params": {}} for r in test])
        Manifest.start("infer", name, f"h-infer-{round_no}", round_no,
                       parents=[store.manifest("prepare")]).finish(folder).write(folder)


def sent_text(*fakes) -> str:
    return "\n".join(json.dumps(r["body"], ensure_ascii=False) for fake in fakes for r in fake.log
                     if r["method"] == "POST")


def respond(body: dict):
    """Synthesis replies of the seeds' own length; judge replies follow their schema."""
    fmt = json.dumps(body.get("response_format") or {})
    if "contents" not in fmt:
        return {"winner": "A", "reason": "clearer"} if "winner" in fmt else {
            "similarity_assessment": {"score": 80, "reason": "close"}, "precision_assessment": {"score": 70,
                                                                                               "reason": "ok"}}
    n = len(json.dumps(body))
    return {"contents": [{"instruction": f"Write a reply about parcel {n}-{k} that arrived damaged in transit.",
                          "response": f"We are sorry that parcel {n}-{k} arrived damaged; a replacement ships "
                                      f"today and you will get a tracking number by mail within one working day."}
                         for k in range(3)]}


def test_planted_personal_data_never_reaches_a_service(tmp_path, fake_openai, fake_gemini, capsys):
    path = make_config(tmp_path)
    cfg = load_config(path)
    store = open_store(cfg)
    prepare.run(cfg, store)
    fake_openai.set_responder(respond)

    values = [v for i in range(ROWS) for v in planted(i).values()]
    assert main(["synthesize", str(path), "--round", "1", "--plan"]) == 0  # --plan shows the scrubbed request
    shown = capsys.readouterr().out
    assert "<EMAIL_1>" in shown and "<CARD_1>" in shown and not any(v in shown for v in values)

    syn = synthesize.run(cfg, store, 1)
    assert syn.counts["kept"] == 6
    put_answers(store, 1)
    ev = evaluate.run(cfg, store, 1)
    gemini = load_config(path, [("service.judge={provider: gemini, model: gemini-2.5-flash, rpm: null, "
                                 "concurrency: 2, price_input_per_1m: 0.3, price_output_per_1m: 2.5}"),
                                "evaluate.metrics=[similarity, precision]", "evaluate.pairwise=false"])
    put_answers(store, 2)
    ev2 = evaluate.run(gemini, store, 2)

    sent = sent_text(fake_openai, fake_gemini)
    assert len(fake_gemini.requests("POST")) >= 4 and len(fake_openai.requests("POST")) >= 2 + 4 * 3
    leaked = [v for v in values if v in sent]
    assert not leaked
    for placeholder in ("<EMAIL_1>", "<PHONE_1>", "<CARD_1>", "<KEY_1>"):
        assert placeholder in sent  # replaced, not dropped: the service still sees the request's shape
    assert not re.search(r"customer\d+@example\.com", sent)
    for m in (syn, ev, ev2):
        scrubbed = m.extra["scrubbed"]
        assert all(scrubbed[t] > 0 for t in ("EMAIL", "PHONE", "CARD", "KEY")), (m.stage, scrubbed)
        assert scrubbed["IBAN"] == 0
    # the artifacts keep the real rows: scrubbing changes what is sent, not the data
    assert planted(0)["email"] in (store.open("prepare") / "train.jsonl").read_text() + (
        store.open("prepare") / "test.jsonl").read_text()
