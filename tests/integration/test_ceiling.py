"""The service's own consistency (the ceiling) through the evaluate stage, with the fake OpenAI server as the
service: round 0 asks it once more for each test prompt, scores that second answer like the student's, every
round compares with it, and a pass-rule condition with ``vs: service`` (a parity rule) passes or fails on it."""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from pipeline.config import build_config
from pipeline.errors import DuoError
from pipeline.manifest import Manifest
from pipeline.records import read_jsonl, write_jsonl
from pipeline.stages.evaluate import run
from pipeline.store import LocalStore

# id, reference (the logged answer), the service's second answer, round 0's answer, round 1's answer
PROMPTS = [
    ("c1", "Open Settings, choose Security, then click Reset password to change it.",
     "Open Settings, pick Security, and click Reset password to change it.",
     "I do not know.", "Open Settings, choose Security and click Reset password."),
    ("c2", "Press Ctrl+S to save the file you are editing right now.",
     "Press Ctrl+S to save the file you are editing.",
     "Files are saved.", "Press Ctrl+S to save the file."),
    ("c3", "Paris is the capital and the largest city of France.",
     "The capital of France is Paris, its largest city.",
     "France is in Europe.", "Paris is the capital of France."),
    ("c4", "Water boils at 100 degrees Celsius at sea level.",
     "At sea level water boils at 100 degrees Celsius.",
     "Water is wet.", "Water boils at 100 degrees Celsius."),
    ("c5", "Mount Everest is 8,849 metres tall, the highest mountain on Earth.",
     "Mount Everest, the highest mountain on Earth, is 8,849 metres tall.",
     "Mountains are tall.", "Mount Everest is 8,849 metres tall."),
    ("c6", "The Pacific is the largest and deepest ocean on Earth.",
     "The Pacific Ocean is the largest and the deepest on Earth.",
     "Oceans are big.", "The Pacific is the largest ocean."),
]
SECOND = {f"Question {p[0]}?": p[2] for p in PROMPTS}
ASKED = {"c6": {"system": "Answer briefly.",  # a multi-turn prompt: what infer records beside its answers
                "context": [{"role": "user", "content": "Hi, a geography question."},
                            {"role": "assistant", "content": "Sure, ask away."}]}}


def service_again(body: dict):
    """The service answering a test prompt a second time: another wording of its logged answer."""
    return SECOND[body["messages"][-1]["content"]]


def make_config(tmp_path, rule=None, **ceiling):
    doc = {
        "task": {"name": "demo"}, "data": {"source": "data.jsonl"}, "student": {"model": "tiny"},
        "store": {"path": str(tmp_path / "store")},
        "service": {"synthesize": {"provider": "openai", "model": "gpt-4o", "rpm": None, "concurrency": 4,
                                   "price_input_per_1m": 2.5, "price_output_per_1m": 10.0,
                                   "max_retries": 2, "timeout_s": 10, "params": {"temperature": 0.7}}},
        "evaluate": {"metrics": ["rougeL", "bleu"], "bootstrap_samples": 500,
                     "offline_pass_rule": rule or [{"metric": "rougeL", "stat": "mean", "min": 0.0}],
                     **({"ceiling": ceiling} if ceiling else {})},
    }
    return build_config(doc, base_dir=tmp_path)


def make_store(tmp_path) -> LocalStore:
    store = LocalStore(tmp_path / "store")
    with store.write("prepare") as folder:
        write_jsonl(folder / "test.jsonl", [{"id": p[0], "instruction": f"Question {p[0]}?", "response": p[1],
                                              "category": "howto" if i < 3 else "facts"}
                                             for i, p in enumerate(PROMPTS)])
        prepare = Manifest.start("prepare", "prepare", "h-prepare")
        prepare.finish(folder).write(folder)
    for round_no, col in ((0, 3), (1, 4)):
        with store.write(f"round-{round_no}/infer") as folder:
            write_jsonl(folder / "answers.jsonl", [
                {"id": p[0], "instruction": f"Question {p[0]}?", "reference": p[1],
                 "category": "howto" if i < 3 else "facts", **ASKED.get(p[0], {"system": None, "context": []}),
                 "answer": p[col],
                 "sample": 0, "model": "tiny", "params": {}} for i, p in enumerate(PROMPTS)])
            Manifest.start("infer", f"round-{round_no}/infer", f"h-infer-{round_no}", round_no,
                           parents=[prepare]).finish(folder).write(folder)
    return store


def chats(fake) -> list[dict]:
    return [r for r in fake.log if r["path"].endswith("/chat/completions")]


def metrics(store, round_no: int) -> dict:
    return json.loads((store.open(f"round-{round_no}/evaluate") / "metrics.json").read_text())


def test_round_0_asks_the_service_once_more_and_every_round_compares_with_it(tmp_path, fake_openai):
    fake_openai.set_responder(service_again)
    rules = [{"metric": "rougeL", "vs": "service", "stat": "ci_low", "min": -0.6},   # parity within 0.6: holds
             {"metric": "rougeL", "vs": "service", "stat": "ci_low", "min": -0.03}]  # within 0.03: fails
    cfg, store = make_config(tmp_path, rules), make_store(tmp_path)

    m0 = run(cfg, store, 0)
    sent = chats(fake_openai)
    assert len(sent) == len(PROMPTS)  # one second answer per test prompt, nothing else (no judge)
    assert {r["body"]["messages"][-1]["content"] for r in sent} == set(SECOND)
    # asked as the student was: c6's system prompt and earlier turn come first
    c6 = next(r["body"]["messages"] for r in sent if r["body"]["messages"][-1]["content"] == "Question c6?")
    assert [m["role"] for m in c6] == ["system", "user", "assistant", "user"]
    assert c6[0]["content"] == "Answer briefly." and c6[1]["content"] == "Hi, a geography question."
    assert all(r["body"]["temperature"] == 0.7 and r["body"]["model"] == "gpt-4o" for r in sent)
    assert m0.counts["ceiling_answers"] == len(PROMPTS) and m0.usage["requests"] == len(PROMPTS)
    assert m0.usage["cost_usd"] > 0 and m0.models["ceiling"] == "openai:gpt-4o"
    ceiling = read_jsonl(store.open("round-0/evaluate") / "ceiling.jsonl")
    assert [r["answer"] for r in ceiling] == [p[2] for p in PROMPTS]
    assert all(0.4 < r["scores"]["rougeL"] < 1.0 for r in ceiling)  # another wording: well below 1.0

    ev0 = metrics(store, 0)
    top = ev0["ceiling"]["rougeL"]
    assert top["n"] == len(PROMPTS) and top["ci_low"] <= top["mean"] <= top["ci_high"]
    assert ev0["vs_service"]["rougeL"]["diff"] < -0.3  # the untuned student is far below the service
    assert set(ev0["ceiling_by_category"]) == {"howto", "facts"}

    run(cfg, store, 1)
    assert len(chats(fake_openai)) == len(PROMPTS)  # paid once per test set: round 1 asks nothing
    ev1 = metrics(store, 1)
    student, service = ev1["metrics"]["rougeL"]["mean"], ev1["ceiling"]["rougeL"]["mean"]
    share = ev1["share_of_ceiling"]["rougeL"]
    assert share["share"] == pytest.approx(student / service, abs=1e-5)
    assert share["ci_low"] <= share["share"] <= share["ci_high"]
    diff = ev1["vs_service"]["rougeL"]
    assert diff["diff"] == pytest.approx(student - service, abs=1e-5)
    ok = [(r["min"], r["ok"]) for r in ev1["rule"]]
    assert ok == [(-0.6, True), (-0.03, False)] and ev1["verdict"] == "fail"
    assert -0.6 <= diff["ci_low"] < -0.03

    # a forced rerun of round 0 takes every second answer from the journal
    again = run(cfg, store, 0, force=True)
    assert len(chats(fake_openai)) == len(PROMPTS) and again.usage["new_cost_usd"] == 0


def test_the_judge_scores_the_second_answers_too_and_plan_counts_them(tmp_path, fake_openai, capsys):
    def respond(body: dict):
        if body.get("response_format"):
            return {"similarity_assessment": {"score": 80, "reason": "close"},
                    "precision_assessment": {"score": 75, "reason": "fine"}}
        return service_again(body)

    fake_openai.set_responder(respond)
    cfg, store = make_config(tmp_path), make_store(tmp_path)
    doc = {**cfg.raw, "service": {**cfg.raw["service"], "judge": cfg.raw["service"]["synthesize"]}}
    doc["evaluate"] = {**doc["evaluate"], "metrics": ["similarity", "precision", "rougeL"], "judge_repeats": 1}
    cfg = build_config(doc, base_dir=tmp_path)
    path = tmp_path / "duo.yaml"
    import yaml
    path.write_text(yaml.safe_dump(doc))
    assert main(["evaluate", str(path), "--round", "0", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "the service once more (ceiling): 6 test prompts" in out
    assert not chats(fake_openai)  # the plan sends nothing

    run(cfg, store, 0)
    n = len(PROMPTS)
    assert len(chats(fake_openai)) == n + 2 * n  # second answers, then the judge on the student's and them
    ceiling = read_jsonl(store.open("round-0/evaluate") / "ceiling.jsonl")
    assert all(r["scores"]["similarity"] == 80 for r in ceiling)
    assert metrics(store, 0)["ceiling"]["similarity"]["mean"] == 80


def test_ceiling_off_asks_nothing_and_a_parity_rule_says_why_it_cannot_hold(tmp_path, fake_openai):
    fake_openai.set_responder(service_again)
    rule = [{"metric": "rougeL", "vs": "service", "stat": "ci_low", "min": -0.5}]
    cfg, store = make_config(tmp_path, rule, enabled=False), make_store(tmp_path)
    run(cfg, store, 0)
    run(cfg, store, 1)
    assert not chats(fake_openai)
    ev1 = metrics(store, 1)
    assert ev1["vs_service"] == {} and ev1["verdict"] == "fail"
    assert "no service ceiling" in ev1["rule"][0]["why"]


def test_ceiling_required_without_a_service_is_a_one_line_error(tmp_path):
    doc = make_config(tmp_path, enabled=True).raw
    doc = {**doc, "service": {}}
    cfg = build_config(doc, base_dir=tmp_path)
    with pytest.raises(DuoError, match="evaluate.ceiling.enabled is true but no service.synthesize"):
        run(cfg, make_store(tmp_path), 0)


def test_the_report_says_where_the_student_stands_against_the_service(tmp_path, fake_openai):
    from pipeline.stages import report

    fake_openai.set_responder(service_again)
    rule = [{"metric": "rougeL", "vs": "service", "stat": "ci_low", "min": -0.6}]
    cfg, store = make_config(tmp_path, rule), make_store(tmp_path)
    run(cfg, store, 0)
    run(cfg, store, 1)
    report.run(cfg, store, 1)
    text = (store.open("round-1/report") / "report.md").read_text()
    ev = metrics(store, 1)
    share = ev["share_of_ceiling"]["rougeL"]["share"]
    assert f"rougeL {ev['metrics']['rougeL']['mean']:.3f}: {share:.0%} of the service's own consistency" in text
    assert "## Parity with the service" in text and "(openai:gpt-4o)" in text
    assert "| howto |" in text and "| facts |" in text  # the decision metric per category
