"""synthesize against the fake OpenAI server, through the real openai SDK and the engine."""

import hashlib
import json
import random
import re
import threading
from collections import Counter
from pathlib import Path

import pytest
import yaml

from pipeline import prepare, synthesize
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.dedup import normalize
from pipeline.errors import DuoError
from pipeline.records import read_jsonl
from pipeline.store import open_store
from pipeline.trainset import training_rows
from tests.textsim import jaccard

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "alpaca_eval_sample.jsonl"
WORDS = ["river", "mountain", "kettle", "violin", "orbit", "lantern", "meadow", "copper", "harbor", "puzzle",
         "glacier", "saddle", "quartz", "pepper", "falcon", "tundra", "ribbon", "velvet", "canyon", "anchor",
         "bamboo", "cobalt", "dune", "ember", "fjord", "granite", "hazel", "ivory", "jasmine", "kiln", "lagoon",
         "marble", "nectar", "opal", "prism", "quill", "raven", "sable", "thistle", "umber", "walnut", "yarrow",
         "zephyr", "almond", "beacon", "cedar", "delta", "ferry", "grove"]
CHAT = "/v1/chat/completions"


def make_config(tmp_path: Path, **synth) -> Path:
    doc = {
        "task": {"name": "demo", "description": "helpful answers to general-assistant questions"},
        "data": {"source": str(SAMPLE), "test": {"size": 0.25, "seed": 3},
                 "columns": {"instruction": "instruction", "response": "output", "category": "dataset"}},
        "student": {"model": "m"},
        "service": {"synthesize": {"provider": "openai", "model": "gpt-4o", "rpm": None, "concurrency": 4,
                                   "price_input_per_1m": 5.0, "price_output_per_1m": 15.0, "max_retries": 1,
                                   "schema_retries": 1, "timeout_s": 10}},
        "synthesize": {"samples": 30, "pairs_per_request": 6, "max_attempts": 6, "seed": 1, **synth},
    }
    path = tmp_path / "duo.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def seed_of(body: dict) -> str:
    user = next(m for m in body["messages"] if m["role"] == "user")["content"]
    return re.search(r"<example_instruction>\n(.*?)\n</example_instruction>", user, re.DOTALL).group(1)


def fresh(h: int, i: int) -> str:
    rng = random.Random(f"{h}:{i}")
    return "Write a short note about " + " ".join(rng.sample(WORDS, 9)) + "."


class MessyService:
    """Answers like a real service on a bad day: each reply mixes good new pairs with copies of test prompts,
    lightly edited test prompts, copies of train prompts, near-copies of its own pairs, empty and too-short
    answers; the first ask of some prompts is malformed JSON (the re-ask succeeds)."""

    def __init__(self, test_prompts: list[str], train_prompts: list[str]):
        self.test, self.train = test_prompts, train_prompts
        self.seen: Counter = Counter()
        self.lock = threading.Lock()

    def __call__(self, body: dict):
        seed = seed_of(body)
        h = int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16)
        with self.lock:
            self.seen[seed] += 1
            first = self.seen[seed] == 1
        if first and h % 4 == 0:
            return '{"contents": [{"instruction": "cut off'
        good = [fresh(h, 0), fresh(h, 1)]
        test = self.test[h % len(self.test)]
        pairs = [
            {"instruction": good[0], "response": "A complete and helpful answer, number one."},
            {"instruction": test, "response": "Copied test prompt answer."},
            {"instruction": test.rstrip(".?!") + " Please answer briefly and clearly!", "response": "Edited copy."},
            {"instruction": good[1], "response": "Another complete and helpful answer."},
            {"instruction": self.train[h % len(self.train)].upper(), "response": "Copied train prompt answer."},
            {"instruction": good[0].replace("Write a short", "Write a very short"), "response": "Near copy here."},
        ]
        if h % 3 == 0:
            pairs.append({"instruction": "Say something", "response": "ok"})
        if h % 3 == 1:
            pairs.append({"instruction": "   ", "response": "An answer to nothing at all."})
        return {"contents": pairs}


@pytest.fixture
def setup(tmp_path, fake_openai):
    path = make_config(tmp_path)
    cfg = load_config(path)
    store = open_store(cfg)
    prepare.run(cfg, store)
    folder = store.open("prepare")
    test = [r["instruction"] for r in read_jsonl(folder / "test.jsonl")]
    train = [r["instruction"] for r in read_jsonl(folder / "train.jsonl")]
    return path, cfg, store, test, train


def test_cleaned_to_target_by_asking_again_and_rerun_reuses_answers(setup, fake_openai):
    _, cfg, store, test, train = setup
    fake_openai.set_responder(MessyService(test, train))
    m = synthesize.run(cfg, store, 1)
    folder = store.open("round-1/synthesize")
    data, removed = read_jsonl(folder / "data.jsonl"), read_jsonl(folder / "removed.jsonl")

    assert m.counts["kept"] == len(data) == 30 and m.counts["shortfall"] == 0
    assert m.counts["attempts"] >= 2  # cleaning removed most pairs, so it asked again
    # never a test prompt, exactly or nearly; never a repeat of each other or of the train split
    for row in data:
        assert normalize(row["instruction"]) not in {normalize(t) for t in test}
        assert max(jaccard(row["instruction"], t) for t in test) < cfg.synthesize.decontamination_threshold
        assert max(jaccard(row["instruction"], t) for t in train) < cfg.synthesize.near_duplicate_threshold
    for i, a in enumerate(data):
        for b in data[:i]:
            assert jaccard(a["instruction"], b["instruction"]) < cfg.synthesize.near_duplicate_threshold, (a, b)
    # every removal is recorded with its reason and counted
    by_reason = Counter(r["reason"] for r in removed)
    for reason in ("empty", "truncated", "test_overlap", "duplicate", "near_duplicate"):
        assert by_reason[reason] > 0, reason
        assert m.counts["removed"][reason] == by_reason[reason]
    assert m.counts["received"] == len(data) + len(removed)
    # rows carry their seed (from the train split only), category and generator
    train_ids = {r["id"]: r for r in read_jsonl(store.open("prepare") / "train.jsonl")}
    row = data[0]
    assert row["id"] == "syn-r1-000001" and row["round"] == 1 and row["generator"] == "gpt-4o"
    assert row["seed_id"] in train_ids and row["category"] == train_ids[row["seed_id"]]["category"]
    assert row["messages"][1] == {"role": "assistant", "content": row["response"]}
    # usage and cost come from the service's own token counts
    sent = fake_openai.requests("POST", CHAT)
    assert m.usage["requests"] == m.counts["requests"] and len(sent) > m.counts["requests"]  # re-asks
    assert m.usage["input_tokens"] == fake_openai.reported["prompt_tokens"]
    assert m.usage["cost_usd"] == pytest.approx((fake_openai.reported["prompt_tokens"] * 5
                                                 + fake_openai.reported["completion_tokens"] * 15) / 1e6)

    # unchanged config: the artifact is returned as is; forced: every answer comes from the journal
    n = len(fake_openai.requests("POST", CHAT))
    assert synthesize.run(cfg, store, 1).timings == m.timings
    m2 = synthesize.run(cfg, store, 1, force=True)
    assert len(fake_openai.requests("POST", CHAT)) == n
    assert read_jsonl(store.open("round-1/synthesize") / "data.jsonl") == data
    assert m2.usage["cached"] == m2.usage["requests"] and m2.usage["new_cost_usd"] == 0
    assert m2.usage["cost_usd"] == pytest.approx(m.usage["cost_usd"])

    # round 2 never repeats round 1's rows; the training set grows by both rounds
    m3 = synthesize.run(cfg, store, 2, samples=5)
    r2 = read_jsonl(store.open("round-2/synthesize") / "data.jsonl")
    assert m3.counts["kept"] == 5 and all(r["id"].startswith("syn-r2-") for r in r2)
    r1_text = {normalize(r["instruction"]) for r in data}
    assert not any(normalize(r["instruction"]) in r1_text for r in r2)
    assert len(training_rows(store, 2)) == len(train) + 30 + 5
    assert len(training_rows(store, 1)) == len(train) + 30


def test_persistent_bad_json_goes_to_failures_with_raw_text(setup, fake_openai):
    _, cfg, store, _, _ = setup
    fake_openai.set_responder(lambda body: "Sorry, I cannot produce JSON today.")
    m = synthesize.run(cfg, store, 1, samples=6)
    failures = read_jsonl(store.open("round-1/synthesize") / "failures.jsonl")
    assert m.counts["kept"] == 0 and m.counts["shortfall"] == 6
    assert m.counts["failures"] == len(failures) == m.counts["requests"] == cfg.synthesize.max_attempts
    assert failures[0]["key"] == "r1-a1-00000" and "cannot produce JSON" in failures[0]["raw"]
    assert failures[0]["error"]


def test_stops_asking_before_the_budget_is_passed(tmp_path, fake_openai):
    path = make_config(tmp_path)
    cfg = load_config(path, ["budget.max_spend_usd=1.0", "service.synthesize.price_output_per_1m=1000",
                             "service.synthesize.params={max_tokens: 200}", "service.synthesize.concurrency=1"])
    store = open_store(cfg)
    prepare.run(cfg, store)
    fake_openai.set_responder(lambda body: {"contents": [
        {"instruction": fresh(len(json.dumps(body)), k), "response": "A fine answer."} for k in range(6)]})
    m = synthesize.run(cfg, store, 1, samples=200)
    assert m.extra["stopped"] == "budget" and 0 < m.counts["kept"] < 200
    assert 0.8 < m.usage["cost_usd"] <= 1.0
    # a raised budget resumes the round: answers already paid for are re-used, not bought again
    sent = len(fake_openai.requests("POST", CHAT))
    cfg2 = load_config(path, ["budget.max_spend_usd=1.5", "service.synthesize.price_output_per_1m=1000",
                              "service.synthesize.params={max_tokens: 200}", "service.synthesize.concurrency=1"])
    m2 = synthesize.run(cfg2, store, 1, samples=200)
    assert m2.counts["kept"] > m.counts["kept"] and m2.usage["cached"] == m.usage["requests"]
    assert len(fake_openai.requests("POST", CHAT)) - sent == m2.usage["requests"] - m2.usage["cached"]
    assert 1.2 < m2.usage["cost_usd"] <= 1.5


def test_target_capped_by_max_synthetic_samples(setup, fake_openai):
    _, cfg, store, _, _ = setup
    fake_openai.set_responder(lambda body: {"contents": [
        {"instruction": fresh(hash(seed_of(body)), k), "response": "A fine answer."} for k in range(6)]})
    cfg = load_config(cfg.source_path, ["budget.max_synthetic_samples=7"])
    assert synthesize.run(cfg, store, 1, samples=5).counts["kept"] == 5
    m = synthesize.run(cfg, store, 2, samples=5)
    assert m.counts["requested"] == 2 and m.counts["kept"] == 2 and m.extra["capped_by_max_synthetic_samples"]


def test_cli_outputs(setup, fake_openai, tmp_path, capsys, monkeypatch):
    path, *_ = setup
    out_file = tmp_path / "gh_out"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out_file))
    fake_openai.set_responder(lambda body: {"contents": [
        {"instruction": fresh(hash(seed_of(body)), k), "response": "A fine answer."} for k in range(6)]})
    assert main(["synthesize", str(path), "--round", "1", "--samples", "4"]) == 0
    assert "kept 4/4 pairs" in capsys.readouterr().out
    outputs = out_file.read_text()
    assert "samples=4" in outputs and "artifact=round-1/synthesize" in outputs and "cost-usd=" in outputs

    n = len(fake_openai.requests("POST", CHAT))
    assert main(["synthesize", str(path), "--round", "2", "--samples", "0"]) == 0  # a schedule may hold a 0
    assert "kept 0/0 pairs from 0 requests" in capsys.readouterr().out
    assert len(fake_openai.requests("POST", CHAT)) == n



def test_gemini_service_with_json_schema(tmp_path, fake_gemini):
    path = make_config(tmp_path)
    cfg = load_config(path, ["service.synthesize={provider: gemini, model: gemini-2.5-flash, rpm: null}"])
    store = open_store(cfg)
    prepare.run(cfg, store)
    bodies = []

    def respond(body):
        bodies.append(body)
        text = json.dumps(body)
        return {"contents": [{"instruction": fresh(len(text), k), "response": "A fine answer."} for k in range(6)]}

    fake_gemini.set_responder(respond)
    m = synthesize.run(cfg, store, 1, samples=8)
    assert m.counts["kept"] == 8 and m.models == {"generator": "gemini-2.5-flash", "provider": "gemini"}
    config = bodies[0]["generationConfig"]
    assert config["responseJsonSchema"]["required"] == ["contents"]
    assert "training data" in json.dumps(bodies[0].get("systemInstruction"))


def test_batch_api_at_half_price(setup, fake_openai):
    _, cfg, store, _, _ = setup
    fake_openai.set_responder(lambda body: {"contents": [
        {"instruction": fresh(hash(seed_of(body)), k), "response": "A fine answer."} for k in range(6)]})
    m = synthesize.run(load_config(cfg.source_path, ["synthesize.batch_api=true"]), store, 1, samples=10)
    assert m.counts["kept"] == 10
    assert len(fake_openai.requests("POST", "/v1/batches")) == 1 and not fake_openai.requests("POST", CHAT)
    full = (fake_openai.reported["prompt_tokens"] * 5 + fake_openai.reported["completion_tokens"] * 15) / 1e6
    assert m.usage["cost_usd"] == pytest.approx(full / 2)
    with pytest.raises(DuoError, match="batch_api needs service.synthesize.provider openai"):
        synthesize.run(load_config(cfg.source_path, ["synthesize.batch_api=true", "service.synthesize.provider=gemini"]),
                       store, 2, samples=1)


def test_cli_without_a_service_llm_skips_and_says_so(tmp_path, capsys, monkeypatch):
    """The round workflow runs `duo synthesize` for every task; with no service LLM it must skip, not fail."""
    out = tmp_path / "gh_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    path = make_config(tmp_path)
    assert main(["synthesize", str(path), "--round", "1", "--set", "service.synthesize=null"]) == 0
    assert "synthesis skipped: no service LLM is configured" in capsys.readouterr().out
    assert "samples=0" in out.read_text()
    cfg = load_config(path, ["service.synthesize=null"])
    assert not open_store(cfg).exists("round-1/synthesize")
    with pytest.raises(DuoError, match="service.synthesize"):
        synthesize.run(cfg, open_store(cfg), 1)
