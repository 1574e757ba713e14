"""Issue 23 end to end: an extraction log (``response_format: json_schema``), a classification log and a
tool-calling log (``tools``, ``tool_calls``, ``tool`` results) through prepare -> finetune (tiny model) -> infer ->
evaluate -> report, each with its kind detected, its metrics in metrics.json and the report; the tools reach the
training text through the chat template and the judge prompt shows the tools and the answer schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.artifacts.infer import read_answers
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.data.structured import parse_tool_calls
from pipeline.data.trainset import prompt_completion, same_columns
from pipeline.judging.absolute import plan_absolute
from pipeline.records import read_jsonl
from pipeline.stats.structured_metrics import field_match, tool_scores
from pipeline.store import open_store
from tests.tiny_model import CHATML

DATA = Path(__file__).resolve().parent.parent / "data"
LOGS = {"json": "extraction_logs.jsonl", "label": "classification_logs.jsonl", "tool_call": "tool_logs.jsonl"}
# The tiny model's ChatML, with the tools (when a row has them) in a first system turn, as tool-aware templates do.
TOOL_TEMPLATE = ("{% if tools %}{{ '<|im_start|>system\nTools: ' + (tools | map(attribute='function.name') | "
                 "join(', ')) + '<|im_end|>\n' }}{% endif %}" + CHATML)


def _round(base: Path, model_dir: Path, kind: str) -> tuple:
    """prepare, finetune, infer, evaluate and report round 1 of one log, through the CLI."""
    doc = {"task": {"name": f"structured-{kind.replace('_', '-')}"},
           "data": {"source": str(DATA / LOGS[kind]), "test": {"size": 8, "seed": 1}},
           "student": {"model": str(model_dir)},
           "finetune": {"sft": {"max_steps": 2, "per_device_train_batch_size": 8, "learning_rate": 1e-3,
                                "warmup_steps": 0, "max_length": "auto"}},
           "infer": {"batch_size": 8, "max_new_tokens": 12},
           "evaluate": {"metrics": ["rougeL"], "bootstrap_samples": 200},
           "store": {"path": str(base / "store")}, "report": {"dir": str(base / "reports")}}
    if kind == "tool_call":
        (base / "template.jinja").write_text(TOOL_TEMPLATE)
        doc["student"]["chat_template"] = "template.jinja"
    path = base / "duo.yaml"
    path.write_text(yaml.safe_dump(doc))
    for verb in (["prepare"], ["finetune", "--round", "1"], ["infer", "--round", "1"], ["evaluate", "--round", "1"],
                 ["report", "--round", "1"]):
        assert main([verb[0], str(path), *verb[1:]]) == 0, verb
    cfg = load_config(path)
    store = open_store(cfg)
    metrics = json.loads((store.open("round-1/evaluate") / "metrics.json").read_text())
    return cfg, store, metrics, base / "reports" / cfg.task.name / "round-1"


@pytest.fixture(scope="module")
def rounds(tmp_path_factory, tiny_model_dir):
    return {kind: _round(tmp_path_factory.mktemp(kind), tiny_model_dir, kind) for kind in LOGS}


def test_prepare_detects_each_kind_and_keeps_tools_and_formats(rounds):
    reasons = {"json": "all 36 targets are JSON and every request asked for JSON (response_format)",
               "label": "36 targets take 3 distinct short values", "tool_call": "all 36 targets are tool calls"}
    for kind, (_, store, _, _) in rounds.items():
        m = store.manifest("prepare")
        assert (m.extra["kind"], m.extra["kind_reason"], m.counts["valid"]) == (kind, reasons[kind], 36)
    _, store, _, _ = rounds["label"]
    assert sorted(store.manifest("prepare").extra["labels"]) == ["negative", "neutral", "positive"]
    rows = read_jsonl(rounds["json"][1].open("prepare") / "train.jsonl")
    assert all(r["response_format"]["type"] == "json_schema" and "tools" not in r for r in rows)
    assert json.loads(rows[0]["response"]).keys() == {"name", "email", "age", "address", "tags"}
    tool_rows = read_jsonl(rounds["tool_call"][1].open("prepare") / "train.jsonl")
    assert all(len(r["tools"]) == 3 for r in tool_rows)
    calls, why = parse_tool_calls(tool_rows[0]["response"])
    assert why is None and calls[0]["name"] in {"get_weather", "convert_currency", "book_table"}
    with_result = next(r for r in tool_rows if any(m["role"] == "tool" for m in r["messages"]))
    roles = [m["role"] for m in with_result["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user", "assistant"]
    assert json.loads(with_result["messages"][2]["content"])[0]["name"] == "get_weather"  # the earlier call, as text
    assert with_result["instruction"] == with_result["messages"][4]["content"]


def test_metrics_of_each_kind_are_in_metrics_json_and_match_the_answers(rounds):
    expected = {"json": ["json_valid", "schema_valid", "field_match", "rougeL"], "label": ["exact_match", "rougeL"],
                "tool_call": ["tool_name", "tool_args", "tool_args_valid", "rougeL"]}
    first = {"json": "field_match", "label": "exact_match", "tool_call": "tool_args"}
    for kind, (_, store, metrics, _) in rounds.items():
        assert metrics["task_kind"] == kind and list(metrics["metrics"]) == expected[kind]
        assert metrics["decision_metric"] == first[kind] and metrics["rule"][0]["metric"] == first[kind]
        scores = read_jsonl(store.open("round-1/evaluate") / "scores.jsonl")
        assert len(scores) == 8 and all(0 <= s["scores"][first[kind]] <= 1 for s in scores)
    # recomputed from the stored answers: the tool-call scores are those of each answer against its reference
    _, store, metrics, _ = rounds["tool_call"]
    answers = {a["id"]: a for a in read_jsonl(store.open("round-1/infer") / "answers.jsonl")}
    for s in read_jsonl(store.open("round-1/evaluate") / "scores.jsonl"):
        mine = tool_scores(answers[s["id"]]["answer"], answers[s["id"]]["reference"])
        assert {k: s["scores"][k] for k in mine} == pytest.approx(mine)
    _, _, label_metrics, _ = rounds["label"]
    summary = label_metrics["labels"]
    assert sum(map(sum, summary["confusion"]["counts"])) == 8
    assert summary["accuracy"] == pytest.approx(label_metrics["metrics"]["exact_match"]["mean"])


def test_reports_state_the_kind_and_a_label_round_draws_its_confusion_matrix(rounds):
    for kind, (_, _, _, folder) in rounds.items():
        report = (folder / "report.md").read_text()
        assert f"## Task kind: {kind}" in report
    label_report = (rounds["label"][3] / "report.md").read_text()
    assert "![Confusion matrix" in label_report and "macro-F1" in label_report
    png = rounds["label"][3] / "confusion_matrix.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (rounds["json"][3] / "confusion_matrix.png").exists()


def test_tools_reach_the_training_text_and_the_judge_sees_tools_and_schema(rounds):
    from datasets import Dataset
    from trl import SFTTrainer

    from pipeline.model.sft_recipe import build, with_max_length
    from pipeline.model.student import load_tokenizer

    cfg, store, _, _ = rounds["tool_call"]
    rows = read_jsonl(store.open("prepare") / "train.jsonl")[:2]
    pairs = same_columns([prompt_completion(r, r["id"]) for r in rows])
    tokenizer = load_tokenizer(cfg, str(cfg.student.model), for_generation=False)
    recipe = with_max_length(build(cfg, cfg.base_dir / "trainer", cuda=False), 512)
    from transformers import AutoModelForCausalLM

    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(cfg.student.model), args=recipe.sft,
                         train_dataset=Dataset.from_list(pairs), processing_class=tokenizer)
    text = tokenizer.decode(trainer.train_dataset[0]["input_ids"])
    assert text.startswith("<|im_start|>system\nTools: get_weather, convert_currency, book_table<|im_end|>")
    # the judge is told the tools of a tool-call row and the schema of a json row
    answers = read_answers(store.open("round-1/infer") / "answers.jsonl")
    prompt = plan_absolute(cfg, answers[:1], template="judge.j2", schema={}, repeats=1)[0][0].messages[-1]["content"]
    assert "# Tools the assistant could call" in prompt and '"name": "convert_currency"' in prompt
    jcfg, jstore, _, _ = rounds["json"]
    janswers = read_answers(jstore.open("round-1/infer") / "answers.jsonl")
    jprompt = plan_absolute(jcfg, janswers[:1], template="judge.j2", schema={}, repeats=1)[0][0].messages[-1]["content"]
    assert "# Format the answer was asked in" in jprompt and '"required": ["name", "email"' in jprompt
    assert field_match(json.loads(janswers[0]["reference"]), json.loads(janswers[0]["reference"])) == 1.0


def _service(reference_of: dict):
    """The fake service answering a tool-call prompt again: its logged call as ``tool_calls`` (content null), the
    arguments as a JSON string, as OpenAI replies."""
    from tests.fakes.http_base import json_reply

    def answer(body: dict):
        calls = json.loads(reference_of[body["messages"][-1]["content"]])
        tool_calls = [{"id": f"call_{i}", "type": "function",
                       "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
                      for i, c in enumerate(calls)]
        return json_reply({"id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": body["model"],
                           "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                               "role": "assistant", "content": None, "tool_calls": tool_calls}}],
                           "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
    return answer


def test_the_ceiling_asks_the_service_with_the_tools_and_scores_its_tool_calls(rounds, fake_openai):
    """Round 0 asks the service once more with the logged tools (and the earlier calls and results in the API's
    shape); its tool calls come back as text and score like the student's: the parity rule has a ceiling."""
    cfg, store, _, _ = rounds["tool_call"]
    doc = yaml.safe_load(cfg.source_path.read_text())
    doc["service"] = {"synthesize": {"provider": "openai", "model": "gpt-4o", "rpm": None, "concurrency": 2,
                                     "price_input_per_1m": 2.5, "price_output_per_1m": 10.0, "max_retries": 1,
                                     "timeout_s": 10}}
    path = cfg.source_path.with_name("with-service.yaml")
    path.write_text(yaml.safe_dump(doc))
    test = read_jsonl(store.open("prepare") / "test.jsonl")
    fake_openai.set_responder(_service({r["instruction"]: r["response"] for r in test}))
    for verb in ("infer", "evaluate"):
        assert main([verb, str(path), "--round", "0"]) == 0, verb
    bodies = [r["body"] for r in fake_openai.log if r["path"].endswith("/chat/completions")]
    assert len(bodies) == 8 and all(len(b["tools"]) == 3 for b in bodies)
    with_result = next(b for b in bodies if any(m["role"] == "tool" for m in b["messages"]))
    call, result = with_result["messages"][2:4]
    assert call["content"] is None and call["tool_calls"][0]["function"]["name"] == "get_weather"
    assert result["tool_call_id"] == call["tool_calls"][0]["id"]
    ceiling = read_jsonl(store.open("round-0/evaluate") / "ceiling.jsonl")
    assert len(ceiling) == 8 and all(c["scores"]["tool_args"] == 1.0 and c["scores"]["tool_name"] == 1.0
                                     for c in ceiling)
    assert json.loads((store.open("round-0/evaluate") / "metrics.json").read_text())["ceiling"]["tool_args"][
        "mean"] == 1.0
