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

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.data.dedup import normalize
from pipeline.data.trainset import training_rows
from pipeline.errors import DuoError
from pipeline.records import read_jsonl
from pipeline.stages import prepare, synthesize
from pipeline.store import open_store
from tests.textsim import jaccard

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "alpaca_eval_sample.jsonl"
WORDS = ["river", "mountain", "kettle", "violin", "orbit", "lantern", "meadow", "copper", "harbor", "puzzle",
         "glacier", "saddle", "quartz", "pepper", "falcon", "tundra", "ribbon", "velvet", "canyon", "anchor",
         "bamboo", "cobalt", "dune", "ember", "fjord", "granite", "hazel", "ivory", "jasmine", "kiln", "lagoon",
         "marble", "nectar", "opal", "prism", "quill", "raven", "sable", "thistle", "umber", "walnut", "yarrow",
         "zephyr", "almond", "beacon", "cedar", "delta", "ferry", "grove"]
CHAT = "/v1/chat/completions"
# The sample's seed answers are 126-4223 characters (5th-95th percentile): fake answers must be in that range.
ANSWER = "A complete, carefully-structured, thoroughly-considered, well-illustrated answer, with one worked-through example."  # few words: replies must fit max_tokens below


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


def seeds_asked(fake) -> list[str]:
    """Answer every synthesis request with 6 new pairs; the returned list gathers each request's seed."""
    asked = []

    def respond(body):
        asked.append(seed_of(body))
        return {"contents": [{"instruction": fresh(hash(seed_of(body)) + len(asked), k), "response": ANSWER}
                             for k in range(6)]}

    fake.set_responder(respond)
    return asked


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
            {"instruction": good[0], "response": "Number one. " + ANSWER},
            {"instruction": test, "response": "Copied test prompt answer."},
            {"instruction": test.rstrip(".?!") + " Please answer briefly and clearly!", "response": "Edited copy."},
            {"instruction": good[1], "response": "Number two. " + ANSWER},
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
    # Short answers (the length filter off): longer ones make two identical requests (one seed drawn twice) get
    # one journal answer on the rerun, at HEAD as well -- a separate question from what this test checks.
    cfg = load_config(path, ["budget.max_spend_usd=1.0", "service.synthesize.price_output_per_1m=1000",
                             "service.synthesize.params={max_tokens: 200}", "service.synthesize.concurrency=1",
                             "synthesize.length_filter.enabled=false"])
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
                              "service.synthesize.params={max_tokens: 200}", "service.synthesize.concurrency=1",
                              "synthesize.length_filter.enabled=false"])
    m2 = synthesize.run(cfg2, store, 1, samples=200)
    assert m2.counts["kept"] > m.counts["kept"] and m2.usage["cached"] == m.usage["requests"]
    assert len(fake_openai.requests("POST", CHAT)) - sent == m2.usage["requests"] - m2.usage["cached"]
    assert 1.2 < m2.usage["cost_usd"] <= 1.5


def test_target_capped_by_max_synthetic_samples(setup, fake_openai):
    _, cfg, store, _, _ = setup
    fake_openai.set_responder(lambda body: {"contents": [
        {"instruction": fresh(hash(seed_of(body)), k), "response": ANSWER} for k in range(6)]})
    cfg = load_config(cfg.source_path, ["budget.max_synthetic_samples=7"])
    assert synthesize.run(cfg, store, 1, samples=5).counts["kept"] == 5
    m = synthesize.run(cfg, store, 2, samples=5)
    assert m.counts["requested"] == 2 and m.counts["kept"] == 2 and m.extra["capped_by_max_synthetic_samples"]


def test_cli_outputs(setup, fake_openai, tmp_path, capsys, monkeypatch):
    path, *_ = setup
    out_file = tmp_path / "gh_out"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out_file))
    fake_openai.set_responder(lambda body: {"contents": [
        {"instruction": fresh(hash(seed_of(body)), k), "response": ANSWER} for k in range(6)]})
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
        return {"contents": [{"instruction": fresh(len(text), k), "response": ANSWER} for k in range(6)]}

    fake_gemini.set_responder(respond)
    m = synthesize.run(cfg, store, 1, samples=8)
    assert m.counts["kept"] == 8 and m.models == {"generator": "gemini-2.5-flash", "provider": "gemini"}
    config = bodies[0]["generationConfig"]
    assert config["responseJsonSchema"]["required"] == ["contents"]
    assert "training data" in json.dumps(bodies[0].get("systemInstruction"))


def test_batch_api_at_half_price(setup, fake_openai):
    _, cfg, store, _, _ = setup
    fake_openai.set_responder(lambda body: {"contents": [
        {"instruction": fresh(hash(seed_of(body)), k), "response": ANSWER} for k in range(6)]})
    m = synthesize.run(load_config(cfg.source_path, ["synthesize.batch_api=true"]), store, 1, samples=10)
    assert m.counts["kept"] == 10
    assert len(fake_openai.requests("POST", "/v1/batches")) == 1 and not fake_openai.requests("POST", CHAT)
    full = (fake_openai.reported["prompt_tokens"] * 5 + fake_openai.reported["completion_tokens"] * 15) / 1e6
    assert m.usage["cost_usd"] == pytest.approx(full / 2)
    # provider gemini has a Batch API too: tests/integration/test_engine_gemini_batch.py (issue 11)


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


# --------------------------------------------------------------------------- issue 13: shape, decontamination, seeds

BANK = "You are Acme Bank's support assistant. Answer in one short sentence."
POET = "You are a poet. Answer every request with a short rhyming verse of four lines."
# (system, prompt, a paraphrase the lexical filter misses and MiniLM puts at cosine >= 0.73, answer length)
CHAT_ROWS = [
    (BANK, "How do I reset my card PIN?", "What are the steps to reset the PIN on my card?", 70),
    (BANK, "What are your opening hours?", "What hours are you open?", 60),
    (BANK, "How can I report a stolen card?", "My card was stolen, how do I tell you about it?", 80),
    (BANK, "Can I increase my daily withdrawal limit?", "Is it possible to raise my daily cash withdrawal limit?", 75),
    (BANK, "How do I set up a standing order?", "What is the way to create a standing order?", 65),
    (BANK, "Where can I find my IBAN?", "Where is my IBAN number shown?", 70),
    (BANK, "Do you charge fees for foreign payments?", "Is there a fee for payments sent abroad?", 85),
    (BANK, "How do I close my savings account?", "What is the way to shut down my savings account?", 60),
    (POET, "Write about the autumn rain.", "Write a verse about rain in autumn.", 260),
    (POET, "Describe a quiet harbor at dawn.", "Describe a calm harbour at sunrise.", 280),
    (POET, "Tell me about a lonely lighthouse.", "Tell me about a solitary lighthouse.", 250),
    (POET, "Sing of a cat asleep by the fire.", "Give me a song about a kitten dozing near the fireplace.", 300),
    (POET, "Write about the first snow of winter.", "Compose lines on winter's earliest snowfall.", 270),
    (POET, "Describe a busy city street at night.", "Depict a crowded city street at nighttime.", 290),
    (POET, "Tell me about an old oak tree.", "Say something about an ancient oak.", 255),
    (POET, "Write about the sound of the sea.", "Compose a verse on the noise of ocean waves.", 275),
]
PARAPHRASE = {prompt: para for _, prompt, para, _ in CHAT_ROWS}


def answer_of(length: int, seed: str) -> str:
    return (f"{seed} " * 200)[:length].strip() + "."


def chat_config(tmp_path: Path, **synth) -> Path:
    data = tmp_path / "chat.jsonl"
    with data.open("w", encoding="utf-8") as f:
        for system, prompt, _, length in CHAT_ROWS:
            f.write(json.dumps({"messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt},
                                             {"role": "assistant", "content": answer_of(length, prompt)}]}) + "\n")
    path = make_config(tmp_path, **synth)
    doc = yaml.safe_load(path.read_text())
    doc["data"] = {"source": str(data), "test": {"size": 4, "seed": 5}}
    path.write_text(yaml.safe_dump(doc))
    return path


def system_in(body: dict) -> str | None:
    user = next(m for m in body["messages"] if m["role"] == "user")["content"]
    found = re.findall(r"<system_prompt>\n(.*?)\n</system_prompt>", user, re.DOTALL)
    assert len(found) <= 1  # one system prompt per request
    return found[0] if found else None


def test_synthesis_keeps_the_seeds_system_prompt_and_drops_length_outliers(tmp_path, fake_openai):
    cfg = load_config(chat_config(tmp_path))
    store = open_store(cfg)
    prepare.run(cfg, store)
    train = {r["instruction"]: r for r in read_jsonl(store.open("prepare") / "train.jsonl")}
    seen = []

    def respond(body):
        seed = train[seed_of(body)]
        seen.append((seed, system_in(body), body))
        h = int(hashlib.sha256(json.dumps(body).encode()).hexdigest()[:8], 16)
        lengths = [120, 150, 200, 5000, 20, 180]  # 5000 and 20: outside the seeds' 60-300 x/÷ 1.5
        return {"contents": [{"instruction": fresh(h, k), "response": answer_of(n, "word")}
                             for k, n in enumerate(lengths)]}

    fake_openai.set_responder(respond)
    m = synthesize.run(cfg, store, 1, samples=12)
    folder = store.open("round-1/synthesize")
    data, removed = read_jsonl(folder / "data.jsonl"), read_jsonl(folder / "removed.jsonl")
    band = m.extra["length_band"]
    assert band["typical"][0] < 70 and 280 < band["typical"][1] <= 300
    for seed, system, body in seen:  # each request carries its own seed's system prompt and the typical lengths
        assert system == seed["system"] and system in (BANK, POET)
        assert f"typically {band['typical'][0]}-{band['typical'][1]} characters" in json.dumps(body)
    assert m.counts["kept"] == 12 and m.counts["length_outliers"] >= 2 * len(seen) - 1
    assert {r["reason"] for r in removed} <= {"length_outlier", "surplus"}
    assert all(band["allowed"][0] <= len(r["response"]) <= band["allowed"][1] for r in data)
    for row in data:  # training sees the system prompt: system + messages [system, user, assistant]
        seed = next(s for s in train.values() if s["id"] == row["seed_id"])
        assert row["system"] == seed["system"]
        assert [t["role"] for t in row["messages"]] == ["system", "user", "assistant"]
        assert row["messages"][0]["content"] == seed["system"]


def test_paraphrases_of_test_prompts_are_dropped_as_semantic_contamination(tmp_path, fake_openai):
    cfg = load_config(chat_config(tmp_path))
    store = open_store(cfg)
    prepare.run(cfg, store)
    test = [r["instruction"] for r in read_jsonl(store.open("prepare") / "test.jsonl")]

    def respond(body):
        h = int(hashlib.sha256(json.dumps(body).encode()).hexdigest()[:8], 16)
        pairs = [{"instruction": PARAPHRASE[t], "response": answer_of(150, "para")} for t in test]
        return {"contents": pairs + [{"instruction": fresh(h, k), "response": answer_of(150, "new")}
                                     for k in range(2)]}

    fake_openai.set_responder(respond)
    m = synthesize.run(cfg, store, 1, samples=6)
    folder = store.open("round-1/synthesize")
    data, removed = read_jsonl(folder / "data.jsonl"), read_jsonl(folder / "removed.jsonl")
    paraphrases = {PARAPHRASE[t] for t in test}
    assert m.counts["kept"] == 6 and not paraphrases & {r["instruction"] for r in data}
    semantic = [r for r in removed if r["reason"] == "semantic_contaminated"]
    assert semantic and m.counts["semantic_contaminated"] == len(semantic) == m.counts["removed"][
        "semantic_contaminated"]
    assert all(r["similarity"] >= cfg.synthesize.decontaminate.threshold for r in semantic)
    # the lexical filter alone lets these through: the same replies with semantic decontamination off keep them
    off = load_config(cfg.source_path, ["synthesize.decontaminate.semantic=false"])
    m2 = synthesize.run(off, store, 1, samples=6, force=True)
    kept = {r["instruction"] for r in read_jsonl(store.open("round-1/synthesize") / "data.jsonl")}
    assert m2.counts["semantic_contaminated"] == 0 and paraphrases & kept


def test_weakest_targeting_draws_more_seeds_from_the_weak_category_and_never_a_test_row(setup, fake_openai):
    _, cfg, store, test, _ = setup
    from tests.round_artifacts import put

    prep = store.open("prepare")
    train_rows, test_rows = read_jsonl(prep / "train.jsonl"), read_jsonl(prep / "test.jsonl")
    weak = Counter(r["category"] for r in train_rows).most_common()[-1][0]  # the rarest: a uniform draw starves it
    scores = [{"id": r["id"], "category": r["category"], "scores": {"rougeL": 0.1 if r["category"] == weak else 0.6}}
              for r in test_rows]
    put(store, "evaluate", 0, {"scores.jsonl": scores, "metrics.json": {"verdict": "fail", "decision_metric":
                                                                         "rougeL"}})
    asked = seeds_asked(fake_openai)
    uniform = synthesize.run(cfg, store, 1, samples=60)
    targeted = synthesize.run(load_config(cfg.source_path, ["synthesize.targeting=weakest"]), store, 1, samples=60,
                              force=True)
    share = [m.counts["seed_mix"].get(weak, 0) / sum(m.counts["seed_mix"].values()) for m in (uniform, targeted)]
    train_share = sum(r["category"] == weak for r in train_rows) / len(train_rows)
    assert share[1] > 0.5 > train_share and share[1] > share[0]
    seeding = targeted.extra["seeds"]
    assert seeding["targeting"] == "weakest" and seeding["scores_round"] == 0
    assert max(seeding["weights"], key=seeding["weights"].get) == weak
    # seeds are train rows only: no request ever showed a test prompt, no row's seed is a test row
    assert not set(asked) & set(test)
    data = read_jsonl(store.open("round-1/synthesize") / "data.jsonl")
    assert {r["seed_id"] for r in data} <= {r["id"] for r in train_rows}


def test_seed_weights_follow_the_gap_and_keep_a_floor_for_every_category():
    from pipeline.config_types import LengthFilterConfig
    from pipeline.data.seeds import UNIFORM_SHARE, Seeds, length_band, weakest_weights

    train = [{"id": f"a{i}", "category": "a"} for i in range(8)] + [{"id": f"b{i}", "category": "b"} for i in range(2)]
    weights = weakest_weights(train, {"a": 0.9, "b": 0.3})
    assert weights["b"] == pytest.approx((1 - UNIFORM_SHARE) + UNIFORM_SHARE * 0.2)
    assert weights["a"] == pytest.approx(UNIFORM_SHARE * 0.8) and sum(weights.values()) == pytest.approx(1)
    assert weakest_weights(train, {"a": 0.5, "b": 0.5}) == {"a": 0.8, "b": 0.2}  # no gap: the train split's mix
    drawn = Counter(Seeds(train, 0, weights).draw(1, 1, i)["category"] for i in range(2000))
    assert 0.8 < drawn["b"] / 2000 < 0.88
    band = length_band([{"response": "x" * n} for n in range(100, 201)], LengthFilterConfig())
    assert band["typical"] == [105, 195] and band["allowed"] == [70, 293] and band["filter"]
