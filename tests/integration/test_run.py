"""``duo run`` end to end on the tiny model: offline, with a fake service LLM over two rounds, and resumed after a
crash without paying twice for any service answer."""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.records import read_jsonl
from pipeline.store import LocalStore
from tests.fakes.http_base import error_reply

DATA = Path(__file__).resolve().parent.parent / "data" / "alpaca_eval_sample.jsonl"
N_TEST, REPEATS = 6, 2
LOW, HIGH = 50, 95


def write_config(tmp_path: Path, model_dir: Path, *, service_url: str | None = None, **sections) -> Path:
    """A task on 30 real AlpacaEval rows (6 held out), the tiny student, a local store beside the config."""
    shutil.copy(DATA, tmp_path / "data.jsonl")
    doc = {
        "task": {"name": "tiny-run", "description": "general assistant answers"},
        "data": {"source": "data.jsonl", "limit": 30, "test": {"size": N_TEST, "seed": 1},
                 "columns": {"instruction": "instruction", "response": "output", "category": "dataset"}},
        "student": {"model": str(model_dir)},
        "finetune": {"sft": {"max_steps": 2, "per_device_train_batch_size": 4, "max_length": 64,
                             "learning_rate": 1e-3, "warmup_steps": 0}},
        "infer": {"batch_size": 6, "max_new_tokens": 8},
        "synthesize": {"samples": 4, "pairs_per_request": 2, "growth": 2.0},
        "evaluate": {"judge_repeats": REPEATS, "metrics": ["similarity", "precision", "rougeL", "bleu"],
                     "offline_pass_rule": [{"metric": "rougeL", "stat": "mean", "min": 0.99}],
                     "bootstrap_samples": 200},
        "budget": {"max_rounds": 3},
        "store": {"path": "store"},
        "report": {"dir": "reports"},
    }
    if service_url:
        svc = {"provider": "openai", "model": "gpt-4o", "base_url": service_url, "rpm": None, "concurrency": 1,
               "price_input_per_1m": 2.5, "price_output_per_1m": 10.0, "max_retries": 2, "timeout_s": 10}
        doc["service"] = {"synthesize": svc, "judge": svc}
    for key, value in sections.items():
        doc[key] = {**doc.get(key, {}), **value}
    path = tmp_path / "duo.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class Service:
    """Responder of the fake OpenAI: fresh synthetic pairs, and a judge that scores LOW for the first
    ``low_calls`` verdicts and HIGH after; ``fail_after`` makes judge calls answer 401 from that count on."""

    def __init__(self, low_calls: int, fail_after: int | None = None):
        self.low_calls, self.fail_after = low_calls, fail_after
        self.judged = self.synthesized = 0
        self.lock = threading.Lock()

    def __call__(self, body: dict):
        user = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        if not body.get("response_format"):  # round 0 asks the service again for each test prompt (the ceiling)
            return f"Here is the service's second answer to: {user}"
        with self.lock:
            if "# Candidate answer" in user:
                if self.fail_after is not None and self.judged >= self.fail_after:
                    return error_reply(401, "Incorrect API key provided (fake).")
                self.judged += 1
                score = LOW if self.judged <= self.low_calls else HIGH
                return {"similarity_assessment": {"score": score, "reason": "compared"},
                        "precision_assessment": {"score": score, "reason": "compared"}}
            self.synthesized += 1
            k = self.synthesized
        words = ["zebra", "quartz", "violin", "harbor", "glacier", "pepper", "lantern", "orbit", "meadow", "cobalt",
                 "saffron", "tundra", "walnut", "falcon", "prism", "canyon"]
        pairs = []
        for j in range(2):
            a, b, c = words[(3 * k + j) % 16], words[(5 * k + 7 * j + 1) % 16], words[(k + j + 9) % 16]
            pairs.append({"instruction": f"Request {k}-{j}: compose a note about {a}, {b} and {c} number {k * 10 + j}.",
                          "response": f"Here is a note {k}-{j} about the {a}, the {b} and the {c}. " * 12})  # seed-like length
        return {"contents": pairs}


def chat_bodies(fake, status: int | None = 200) -> list[dict]:
    return [r["body"] for r in fake.log if r["path"].endswith("/chat/completions") and
            (status is None or r["status"] == status)]


def is_judge(body: dict) -> bool:
    return any("# Candidate answer" in str(m.get("content")) for m in body["messages"])


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory, tiny_model_dir):
    """One offline ``duo run`` (no service LLM), then the same command again; their outputs."""
    base = tmp_path_factory.mktemp("offline")
    config = write_config(base, tiny_model_dir)
    outputs = []
    for _ in range(2):
        import contextlib
        import io

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["run", str(config)])
        outputs.append((rc, out.getvalue(), err.getvalue()))
    return base, LocalStore(base / "store"), outputs


def test_offline_run_completes_one_round_and_says_what_was_skipped(offline_run):
    _base, store, outputs = offline_run
    rc, out, err = outputs[0]
    assert rc == 0, err
    assert "synthesis skipped: no service LLM is configured" in out
    assert "LLM judge skipped: no service LLM is configured" in out
    # the round failed the offline rule, but without synthesis another round would re-train on the same data
    assert store.list("round-") == ["round-0/evaluate", "round-0/infer"] + [
        f"round-1/{s}" for s in ("decide", "evaluate", "finetune", "infer", "report")]  # round 0: the untuned base
    assert "another round would re-train on the same data" in out
    for stage in ("prepare", "finetune", "infer", "evaluate", "report", "decide"):
        line = next(ln for ln in out.splitlines() if f" {stage} " in ln and ("done" in ln or "skipped" in ln))
        assert "MiB" in line and "s " in line, line
    # where to look next
    report_line = next(ln for ln in out.splitlines() if ln.startswith("report:"))
    adapter_line = next(ln for ln in out.splitlines() if ln.startswith("adapter:"))
    assert Path(report_line.split(":", 1)[1].strip()).exists()
    assert (Path(adapter_line.split(":", 1)[1].strip()) / "adapter_config.json").is_file()
    scores = read_jsonl(store.open("round-1/evaluate") / "scores.jsonl")
    assert len(scores) == N_TEST and all(s["judge"] == [] for s in scores)


def test_offline_report_says_synthesis_and_judge_were_skipped(offline_run):
    _, store, _ = offline_run
    report = (store.open("round-1/report") / "report.md").read_text(encoding="utf-8")
    assert "synthesis was skipped because no service LLM is configured" in report
    assert "No LLM judge ran this round (no `service.judge` configured)" in report
    decision = read_decision(store, 1)
    assert decision["decision"] == "stop-no-service" and decision["next_round"] is None
    assert "another round would re-train on the same data" in decision["reason"]


def test_rerun_skips_every_complete_artifact(offline_run):
    _, _store, outputs = offline_run
    rc, out, err = outputs[1]
    assert rc == 0, err
    stage_lines = [ln for ln in out.splitlines() if ln.startswith(("task ", "round 0 ", "round 1 "))
                   and " off " not in ln]
    assert len(stage_lines) == 8 and all(" skipped " in ln for ln in stage_lines), stage_lines


@pytest.mark.slow  # two full rounds (or a run and its resume): ~10 s on 2 idle cores, minutes when shared
def test_service_run_loops_until_the_judge_passes(tmp_path, tiny_model_dir, fake_openai, capsys):
    # round 0 (the untuned base and the service's second answers, the ceiling) and round 1 judged LOW, round 2 HIGH
    service = Service(low_calls=3 * N_TEST * REPEATS)
    fake_openai.set_responder(service)
    config = write_config(tmp_path, tiny_model_dir, service_url=fake_openai.url + "/v1")

    assert main(["run", str(config)]) == 0
    out = capsys.readouterr().out
    store = LocalStore(tmp_path / "store")
    assert not store.list("round-3")
    decisions = [read_decision(store, r) for r in (1, 2)]
    assert decisions[0]["decision"] == "continue" and decisions[1]["decision"] == "pass"
    # round 2 trained on more data: the coverage set plus both rounds' synthetic pairs
    r1, r2 = (store.manifest(f"round-{r}/finetune").counts for r in (1, 2))
    assert r2["train_rows"] > r1["train_rows"]
    assert len(read_jsonl(store.open("round-2/synthesize") / "data.jsonl")) > 0
    judge_calls = [b for b in chat_bodies(fake_openai) if is_judge(b)]
    assert len(judge_calls) == 4 * N_TEST * REPEATS  # round 0 once (with the ceiling), then rounds 1 and 2
    again = [b for b in chat_bodies(fake_openai) if not b.get("response_format")]
    assert len(again) == N_TEST  # the ceiling: paid once per test set
    assert "skipped: no service LLM" not in out
    cost = float(re.search(r"service cost \$([0-9.]+)", out).group(1))
    assert cost > 0


def read_decision(store: LocalStore, round_no: int) -> dict:
    import json

    return json.loads((store.open(f"round-{round_no}/decide") / "decision.json").read_text())


@pytest.mark.slow  # two full rounds (or a run and its resume): ~10 s on 2 idle cores, minutes when shared
def test_interrupted_run_resumes_without_paying_twice(tmp_path, tiny_model_dir, fake_openai, capsys):
    # round 0 (the untuned base and the ceiling's second answers) fully judged, then 5 of round 1's verdicts
    paid_before = 2 * N_TEST * REPEATS + 5
    service = Service(low_calls=10**6, fail_after=paid_before)  # the key is revoked mid-judging
    fake_openai.set_responder(service)
    config = write_config(tmp_path, tiny_model_dir, service_url=fake_openai.url + "/v1", budget={"max_rounds": 1})

    assert main(["run", str(config)]) == 1
    first = capsys.readouterr()
    last = first.err.strip().splitlines()[-1]
    assert last.startswith("error:") and "401" in last, first.err
    store = LocalStore(tmp_path / "store")
    assert store.exists("round-1/infer") and not store.exists("round-1/evaluate")
    first_ok = chat_bodies(fake_openai)
    synth_first = [b for b in first_ok if not is_judge(b)]
    assert len([b for b in first_ok if is_judge(b)]) == paid_before and synth_first

    fake_openai.log.clear()
    service.fail_after = None
    assert main(["run", str(config)]) == 0
    out = capsys.readouterr().out
    for stage in ("prepare", "synthesize", "finetune", "infer"):
        line = next(ln for ln in out.splitlines() if f" {stage} " in ln)
        assert " skipped " in line, line
    second = chat_bodies(fake_openai, status=None)
    # no synthesis request again, and only the verdicts not yet paid for were asked
    assert not [b for b in second if not is_judge(b)]
    assert len(second) == 3 * N_TEST * REPEATS - paid_before
    assert store.exists("round-1/decide")


def test_missing_api_key_is_named(tmp_path, tiny_model_dir, fake_openai, capsys, monkeypatch):
    config = write_config(tmp_path, tiny_model_dir, service_url=fake_openai.url + "/v1")
    monkeypatch.delenv("OPENAI_API_KEY")
    assert main(["run", str(config)]) == 1
    err = capsys.readouterr().err
    assert "OPENAI_API_KEY" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "store" / "prepare").exists()
