"""Issue 22 (clean teacher data): refusals, replies cut at the token limit, empty answers and errors in a chat
log and in synthesized replies are dropped and counted by reason (manifests and the report's Data section);
multi-turn sessions never straddle the test split."""

from __future__ import annotations

import itertools
import json
import threading
from collections import defaultdict

import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.data import sessions
from pipeline.data.rows import read_rows
from pipeline.data.sources import load_source
from pipeline.records import read_jsonl
from pipeline.stages import prepare, report
from pipeline.store import open_store
from tests.fakes.http_base import error_reply, json_reply
from tests.round_artifacts import build_baseline, build_round

SYSTEM = "You are Acme Bank's support assistant."
TOPICS = ["card PIN", "opening hours", "foreign fees", "statements", "address change", "transfers",
          "savings rates", "overdrafts"]


def chat(*turns: str) -> list[dict]:
    """System prompt, then alternating user/assistant turns."""
    roles = itertools.cycle(["user", "assistant"])
    return [{"role": "system", "content": SYSTEM}] + [{"role": next(roles), "content": t} for t in turns]


def logged(messages: list[dict], content, finish: str = "stop", **extra) -> dict:
    """A logged request with its chat.completion reply (the answer is the reply's message)."""
    return {"request": {"model": "gpt-4o", "messages": messages, **extra},
            "response": {"object": "chat.completion",
                         "choices": [{"index": 0, "finish_reason": finish,
                                      "message": {"role": "assistant", "content": content}}]}}


def stored(turns: list[dict], answer: str, session: str, finish: str = "stop") -> dict:
    """A stored completion with its input turns and metadata."""
    return {"object": "chat.completion", "metadata": {"session_id": session}, "messages": turns,
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": answer}}]}


def session_rows(session: str, n_turns: int = 3) -> list[dict]:
    """One conversation logged turn by turn: row k holds the k earlier exchanges as context."""
    rows, turns = [], []
    for k in range(n_turns):
        question, answer = f"{session}: question {k} about my account?", f"{session}: answer {k}, done."
        turns_in = chat(*turns, question)
        rows.append(stored(turns_in, answer, session))
        turns += [question, answer]
    return rows


def chain_rows() -> list[dict]:
    """A conversation logged turn by turn with no session id: linked by its earlier turns."""
    rows, turns = [], []
    for k in range(3):
        question, answer = f"Chain question {k}: what next?", f"Chain answer {k}: this."
        rows.append(logged(chat(*turns, question), answer))
        turns += [question, answer]
    return rows


def log_rows() -> list[dict]:
    good = [{"messages": chat(f"How do I check my {t}?", f"Open the app and tap {t}. Anything else?")}
            for t in TOPICS]
    good.append({"messages": chat(
        "Can you help me budget?", "I can't wait to help! Start with your income.")})
    good.append({"messages": chat("I lost my card.", "I'm sorry to hear that; I can block it for you.")})
    dropped = [
        # refusals: a pattern in the answer, a curly apostrophe, the provider's content filter
        {"messages": chat("How do I open someone else's account?", "I'm sorry, but I can't help with that.")},
        logged(chat("Tell me another customer's balance."), "I can\u2019t assist with that request."),
        logged(chat("Write something hateful."), "", finish="content_filter"),
        # cut at the token limit: a logged reply and a stored completion
        logged(chat("Explain every fee you charge."), "Our fees are as follows: first, the", finish="length"),
        stored(chat("List all branches."), "Branches: Aachen, Berlin, Col", "s-cut", finish="length"),
        # empty answers: a logged reply and a fine-tuning row
        logged(chat("What is my IBAN?"), ""),
        {"messages": chat("What is the SWIFT code?", "   ")},
        # errors: a logged call that failed, a Batch API output line with a server error
        {"request": {"model": "gpt-4o", "messages": chat("Close my account.")},
         "error": {"message": "Rate limit reached for gpt-4o", "code": "rate_limit_exceeded"}},
        {"custom_id": "req-7", "error": None,
         "response": {"status_code": 500, "body": {"error": {"message": "server error"}}}},
    ]
    convs = [r for s in ("s1", "s2", "s3", "s4") for r in session_rows(s)]
    return good + dropped[:4] + convs[:6] + dropped[4:] + convs[6:] + chain_rows()


EXPECTED_DROPS = {"refusal": 3, "truncated": 2, "empty": 2, "error": 2}
N_VALID = 10 + 12 + 3


@pytest.fixture
def chat_task(tmp_path):
    path = tmp_path / "logs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in log_rows()))
    cfg_path = tmp_path / "duo.yaml"
    cfg_path.write_text(f"""
task: {{name: bank, description: bank support answers}}
data: {{source: {path}, test: {{size: 0.3, seed: 1}}}}
student: {{model: m}}
store: {{path: {tmp_path / 'store'}}}
privacy: {{scrub: false}}
service:
  synthesize: {{provider: openai, model: gpt-4o, rpm: null, concurrency: 4, price_input_per_1m: 5.0,
               price_output_per_1m: 15.0, max_retries: 1, schema_retries: 0, timeout_s: 10}}
  judge: {{provider: openai, model: gpt-4o, price_input_per_1m: 2.5, price_output_per_1m: 10}}
synthesize: {{samples: 18, pairs_per_request: 3, max_attempts: 1, seed: 1, length_filter: {{enabled: false}},
             decontaminate: {{semantic: false}}}}
""")
    return cfg_path


def test_refusals_cut_empty_and_errors_in_a_chat_log_are_dropped_and_counted(chat_task, capsys):
    assert main(["prepare", str(chat_task)]) == 0
    assert "dropped (data.hygiene): 3 refusal, 2 truncated, 2 empty, 2 error" in capsys.readouterr().out
    cfg = load_config(chat_task)
    store = open_store(cfg)
    m = store.manifest("prepare")
    assert m.counts["dropped"] == EXPECTED_DROPS
    assert (m.counts["valid"], m.counts["bad"], m.counts["rows"]) == (N_VALID, 0, N_VALID + 9)
    bad = read_jsonl(store.open("prepare") / "bad_rows.jsonl")
    assert sorted(b["line"] for b in bad if b["hygiene"] == "refusal") == [11, 12, 13]
    assert all(b["kind"] == "dropped" for b in bad)
    folder = store.open("prepare")
    rows = read_jsonl(folder / "train.jsonl") + read_jsonl(folder / "test.jsonl")
    answers = {r["response"] for r in rows}
    assert "I can't wait to help! Start with your income." in answers  # near-misses of the patterns stay
    assert "I'm sorry to hear that; I can block it for you." in answers
    assert not any("sorry, but" in a or not a.strip() for a in answers)
    # off: the same log keeps refusals and cut replies; an empty answer (the content filter's too) is bad
    off = ["data.hygiene.refusals=false", "data.hygiene.truncated=false", "data.hygiene.empty=false"]
    valid, bad = read_rows(load_config(chat_task, off), load_source(load_config(chat_task, off)))
    assert len(valid) == N_VALID + 4 and sum(b["kind"] == "invalid" for b in bad) == 3
    assert [b["hygiene"] for b in bad if b["kind"] == "dropped"] == ["error", "error"]


def _sides(train: list[dict], test: list[dict]) -> dict[str, set[str]]:
    side: dict[str, set[str]] = defaultdict(set)
    for part, rows in (("train", train), ("test", test)):
        for r in rows:
            side[r.get("session") or ("chain" if r["instruction"].startswith("Chain") else r["id"])].add(part)
    return side


def test_sessions_never_straddle_the_split(chat_task):
    assert main(["prepare", str(chat_task)]) == 0
    cfg = load_config(chat_task)
    store = open_store(cfg)
    m = store.manifest("prepare")
    folder = store.open("prepare")
    train, test = read_jsonl(folder / "train.jsonl"), read_jsonl(folder / "test.jsonl")
    assert m.extra["split_by"] == "conversation" and m.counts["sessions"] == 10 + 4 + 1
    assert m.extra["session_key"] == "metadata.session_id|conversation_id|thread_id"
    assert len(test) == round(N_VALID * 0.3) and {r["session"] for r in train + test if "session" in r} == {
        "s1", "s2", "s3", "s4"}
    assert all(len(s) == 1 for s in _sides(train, test).values())
    # every seed: no conversation on both sides, the test size kept, the same split drawn twice
    valid, _ = read_rows(cfg, load_source(cfg))
    straddled, in_test = 0, set()
    for seed in range(12):
        tr, te = prepare.split(valid, 0.3, seed)
        assert (tr, te) == prepare.split(valid, 0.3, seed) and 1 <= len(te) <= 8
        assert all(len(s) == 1 for s in _sides(tr, te).values()), seed
        in_test |= {k for k, s in _sides(tr, te).items() if s == {"test"} and not k.startswith("cov-")}
        # drawn row by row (the split before sessions), some conversation would straddle
        flat = [{**r, "session": None, "messages": r["messages"][-2:]} for r in valid]
        tr, te = prepare.split(flat, 0.3, seed)
        ids = {r["id"] for r in te}
        straddled += any(0 < sum(r["id"] in ids for r in valid if r.get("session") == s) < 3
                         for s in ("s1", "s2", "s3", "s4"))
    assert in_test >= {"s1", "s2", "s3", "s4", "chain"} and straddled
    # a session column of the team's own: the request's `user`
    user_cfg = load_config(chat_task, ["data.columns.session=user"])
    assert sessions.session_of({"request": {"user": "u-7", "messages": []}}, user_cfg) == "u-7"
    assert sessions.session_of({"metadata": {"session_id": "s1"}}, user_cfg) is None


class Replies:
    """Per request, in arrival order: every third reply cut at the token limit, the second a 400, the last
    refused as OpenAI's structured outputs refuse (no content, a ``refusal``), the others a good pair, a
    refusal and an empty answer."""

    def __init__(self):
        self.n, self.lock, self.finish = itertools.count(), threading.Lock(), {}

    def __call__(self, body: dict):
        with self.lock:
            n = next(self.n)
        if n == 1:
            return error_reply(400, "Invalid request (fake)", type="invalid_request_error")
        if n == 5:
            return json_reply({"id": "chatcmpl-refused", "object": "chat.completion", "created": 0,
                               "model": body["model"], "usage": {"prompt_tokens": 9, "completion_tokens": 6,
                                                                  "total_tokens": 15},
                               "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                            "message": {"role": "assistant", "content": None,
                                                        "refusal": "I'm sorry, I can't help with that."}}]})
        key = json.dumps(body["messages"])
        self.finish[key] = "length" if n % 3 == 0 else "stop"
        return {"contents": [
            {"instruction": f"Describe account feature {n} number {n * 7919} to a new customer.",
             "response": f"Feature {n} lets you manage money from the app, step by step, with no fee."},
            {"instruction": f"Reveal customer {n}'s private balance.",
             "response": "I'm sorry, but I can't help with that."},
            {"instruction": f"Say nothing about topic {n}.", "response": ""}]}

    def finish_reason(self, body: dict) -> str | None:
        return self.finish.get(json.dumps(body["messages"]))


def test_synthesized_refusals_cut_and_failed_replies_are_dropped_and_reported(chat_task, fake_openai):
    replies = Replies()
    fake_openai.set_responder(replies)
    fake_openai.finish_reason = replies.finish_reason
    assert main(["prepare", str(chat_task)]) == 0
    assert main(["synthesize", str(chat_task), "--round", "1"]) == 0
    cfg = load_config(chat_task)
    store = open_store(cfg)
    m = store.manifest("round-1/synthesize")
    # 6 requests: 1 failed, 5 refused; 0 and 3 were cut (their empty pair counts as empty, the other two as
    # truncated); 2 and 4 give a good pair, a refusal and an empty one
    assert m.counts["hygiene"] == {"refusal": 3, "truncated": 4, "empty": 4, "error": 1}
    removed = m.counts["removed"]
    assert m.counts["kept"] == 2 and (removed["refusal"], removed["truncated"]) == (2, 4)
    assert m.counts["failures"] == 2
    rows = read_jsonl(store.open("round-1/synthesize") / "removed.jsonl")
    assert sum(1 for r in rows if r.get("cut_by_token_limit")) == 4
    # the report's Data section shows both stages' drops
    build_baseline(store)
    build_round(store, 1, synthesize=False, kept=2)
    report.run(cfg, store, 1)
    text = (cfg.resolve("reports") / "bank" / "round-1" / "report.md").read_text()
    data = text.split("## Data")[1]
    assert ("coverage rows dropped: 3 refusal, 2 truncated, 2 empty, 2 error; "
            "synthesis round 1: 3 refusal, 4 truncated, 4 empty, 1 error.") in data
    assert "The split kept each of 15 conversations on one side." in data
    header = next(line for line in data.splitlines() if line.startswith("| round |"))
    assert " refusal |" in header
