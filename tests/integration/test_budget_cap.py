"""The hard spend cap and the cost preview (issue 10, items 3 and 4), against the loopback fake OpenAI server.

- 16 requests in flight at once never take the recorded spend past ``budget.max_spend_usd``: each send reserves
  its worst case (prompt + max_tokens) first and settles at the real usage.
- ``decide`` stops (stop-budget) when what is left cannot pay for the next round's estimated synthesis and judging.
- A round whose synthesis kept 0 rows is not fine-tuned again (``duo finetune`` refuses; ``duo run`` skips to decide).
- ``--plan`` prints requests, tokens, dollars and the first request, and sends and writes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.config import build_config, load_config
from pipeline.llm import Engine, Request
from pipeline.stages import prepare
from pipeline.stages import run as run_stage
from pipeline.stats.budget import Spend, not_sent
from pipeline.stats.decision_facts import decide_round
from pipeline.stats.decision_text import record
from pipeline.store import artifact_name, open_store
from tests.fakes.openai_fixtures import service_cfg
from tests.round_artifacts import build_baseline, build_prepare, build_round, make_config, put

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "alpaca_eval_sample.jsonl"
PRICE = 1000.0  # USD per 1M tokens, in and out: a token costs $0.001, so sums are easy to read
MAX_TOKENS = 40


def decision(cfg, store, round_no: int) -> dict:
    """The decision after ``round_no`` as ``decide`` stores it (``decision.json``)."""
    return record(decide_round(cfg, store, round_no))


def capped_spend(tmp_path, cap: float, svc) -> Spend:
    doc = {"task": {"name": "demo"}, "data": {"source": "x.jsonl"}, "student": {"model": "m"},
           "budget": {"max_spend_usd": cap}}
    return Spend(build_config(doc, base_dir=tmp_path), svc, before=0.0)


def sixteen_at_once(fake_openai, tmp_path, cap: float, n: int = 48) -> tuple[float, list, Spend]:
    """``n`` requests, 16 in flight at a time, against a cap; the spend the fake reported, the results, the Spend."""
    fake_openai.set_responder(lambda body: " ".join(["word"] * 60))  # cut at max_tokens: 40 words, "length"
    fake_openai.set_faults(latency_s=0.05)  # replies take a while, so all 16 are in flight together
    svc = service_cfg(rpm=None, concurrency=16, max_retries=3, timeout_s=5, price_input_per_1m=PRICE,
                      price_output_per_1m=PRICE, params={"max_tokens": MAX_TOKENS})
    spend = capped_spend(tmp_path, cap, svc)
    prompt = "Please answer this question in a few plain words, number {i}, thank you very much."
    reqs = [Request(key=f"k{i}", messages=[{"role": "user", "content": prompt.format(i=i)}]) for i in range(n)]
    results = Engine(svc, spend=spend, progress=False, backoff_base=0.02).run(reqs)
    rep = fake_openai.reported
    return (rep["prompt_tokens"] + rep["completion_tokens"]) * PRICE / 1e6, results, spend


def test_sixteen_concurrent_requests_never_pass_the_cap(fake_openai, tmp_path):
    # one request: about 16 prompt words + 40 reply words = $0.056 real; worst case (prompt at 3 characters a
    # token + max_tokens) $0.073. A cap of $0.25 pays for 4 real answers: 16 unguarded senders would spend $0.90.
    cap, observed = 0.25, []
    for run in range(5):
        fake_openai.reset()
        spent, results, spend = sixteen_at_once(fake_openai, tmp_path / f"r{run}", cap)
        sent = [r for r in results if not not_sent(r)]
        observed.append(spent)
        assert spent <= cap + 1e-12, f"run {run}: the fake reported ${spent:.4f} > cap ${cap}"
        assert len(fake_openai.log) == len(sent) >= 3  # the cap was used, not refused outright
        assert all(r.error == "budget" and r.attempts == 0 for r in results if not_sent(r))
        assert len(results) - len(sent) >= 40 and spend.stopped
        assert spend.settled == pytest.approx(spent) and spend.reserved == pytest.approx(0.0)
    print(f"\ncap ${cap:.4f}; recorded spend over 5 runs: " + ", ".join(f"${s:.4f}" for s in observed)
          + f"; max ${max(observed):.4f}")


def test_without_a_cap_all_sixteen_go(fake_openai, tmp_path):
    spent, results, _ = sixteen_at_once(fake_openai, tmp_path, cap=100.0, n=16)
    assert [r.error for r in results if not r.ok] == [] and spent > 0.25 * 3  # what the cap above prevents


# --------------------------------------------------------------------------- decide and the next round's cost


def test_decide_stops_when_the_next_round_is_unaffordable(tmp_path):
    # $5 budget. Round 1: synthesis $2.00 over 200 requests ($0.01 each), judging $0.25 over 12 requests.
    # Round 2 wants 2000 rows = 400 requests = $4.00, plus $0.25 of judging: $2.25 + $4.25 > $5.
    cfg = make_config(tmp_path)
    store = open_store(cfg)
    build_prepare(store)
    build_baseline(store)
    build_round(store, 1, kept=1000, synth_cost=2.0, judge_cost=0.25)
    d = decision(cfg, store, 1)
    assert d["decision"] == "stop-budget" and d["next_round"] is None
    assert ("the $2.75 left of budget.max_spend_usd=$5.00 cannot pay for round 2: estimated synthesis $4.00 "
            "(400 requests x $0.0100) + judging $0.25 (12 requests x $0.0208)") in d["reason"]
    # cheaper synthesis: the same round may go on
    cfg2 = make_config(tmp_path, ["budget.max_spend_usd=7"])
    assert decision(cfg2, store, 1)["decision"] == "continue"


def test_round_with_no_new_rows_is_not_finetuned_again(tmp_path, capsys):
    cfg = make_config(tmp_path)
    store = open_store(cfg)
    build_prepare(store)
    build_baseline(store)
    build_round(store, 1, kept=1000, synth_cost=0.5)
    put(store, "synthesize", 2, {"data.jsonl": []}, counts={"requested": 2000, "kept": 0, "requests": 400,
                                                           "received": 0, "failures": 400})
    code = main(["finetune", str(tmp_path / "duo.yaml"), "--round", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err == [("error: round 2 adds no training rows over round 1 (synthesis kept 0): nothing "
                                  "new to train")]
    assert not store.exists(artifact_name("finetune", 2))
    d = decision(cfg, store, 2)
    # issue 20: every reply failed, money was not why: no data, not the budget
    assert d["decision"] == "stop-no-data" and "synthesis added no rows" in d["reason"]
    assert "kept 0 of 2000 asked" in d["reason"] and "400 failed replies" in d["reason"]
    assert main(["decide", str(tmp_path / "duo.yaml"), "--round", "2"]) == 0  # no evaluate: decide still decides
    assert "stop-no-data" in capsys.readouterr().out


def test_duo_run_goes_from_an_empty_synthesis_straight_to_decide(tmp_path, monkeypatch):
    cfg = make_config(tmp_path)
    store = open_store(cfg)
    build_prepare(store)
    build_round(store, 1, kept=1000, synth_cost=0.5)
    ran = []

    class Stage:
        def __init__(self, name):
            self.name = name

        def run(self, cfg, store, round_no, force=False, **kw):
            ran.append(self.name)
            if self.name == "synthesize":
                return put(store, "synthesize", round_no, {"data.jsonl": []}, counts={"kept": 0})
            from pipeline.stages import decide, report
            return {"report": report, "decide": decide}[self.name].run(cfg, store, round_no)

    monkeypatch.setattr(run_stage, "_stage_module", Stage)
    records = run_stage.run_round(cfg, store, 2, None, force=False, echo=lambda line: None)
    assert ran == ["synthesize", "report", "decide"]  # issue 20: the round is reported, then decided
    assert [r.status for r in records] == ["done", "off", "off", "off", "done", "done"]
    from pipeline.artifacts.decide import read_decision
    assert read_decision(store, 2)["decision"] == "stop-no-data"
    text = (store.open("round-2/report") / "report.md").read_text()
    assert "round 2 (not evaluated)" in text and "**Decision: `stop-no-data`**" in text


# --------------------------------------------------------------------------- --plan


def plan_config(tmp_path: Path) -> Path:
    doc = {
        "task": {"name": "demo", "description": "helpful answers to general-assistant questions"},
        "data": {"source": str(SAMPLE), "test": {"size": 0.25, "seed": 3},
                 "columns": {"instruction": "instruction", "response": "output", "category": "dataset"}},
        "student": {"model": "m"},
        "service": {"synthesize": {"provider": "openai", "model": "gpt-4o-2024-08-06", "rpm": None,
                                   "params": {"max_tokens": 1000}},
                    "judge": {"provider": "openai", "model": "gpt-4o-mini", "params": {"max_tokens": 300}}},
        "synthesize": {"samples": 30, "pairs_per_request": 6, "seed": 1},
        "evaluate": {"judge_repeats": 2, "pairwise": True},
        "budget": {"max_spend_usd": 2.0},
    }
    path = tmp_path / "duo.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_plan_prints_counts_and_dollars_and_sends_nothing(fake_openai, tmp_path, capsys):
    path = plan_config(tmp_path)
    cfg = load_config(path)
    store = open_store(cfg)
    prepare.run(cfg, store)
    capsys.readouterr()

    assert main(["synthesize", str(path), "--round", "1", "--plan"]) == 0
    out = capsys.readouterr().out
    print(out)
    assert "synthesize round 1 (plan: nothing is sent, nothing is written)" in out
    assert ("synthesize round 1: 30 pairs at 6 a request, attempt 1 of at most 5: 5 requests to "
            "openai:gpt-4o-2024-08-06, 0 already answered in the journal (free), 5 to send") in out
    assert "output 5,000 (prompt at 3 characters a token; each reply at max_tokens 1000)" in out
    assert "$2.50 in / $10.00 out per 1M tokens (table of 2026-11-23)" in out
    assert "first request (r1-a1-00000):" in out and "[user] " in out
    tokens_in = int(re.search(r"input ([\d,]+), output 5,000", out).group(1).replace(",", ""))
    assert 4000 < tokens_in < 6000  # five prompts of about 3 000 characters at 3 characters a token
    dearest = (tokens_in * 2.50 + 5000 * 10.00) / 1e6  # the table's prices, every reply at max_tokens
    assert f"total: 5 requests to send, at most ${dearest:.4f}" in out

    test_rows = store.manifest("prepare").counts["test"]
    answers = [{"id": f"t{i}", "instruction": f"question {i}", "reference": f"reference {i}", "category": None,
                "answer": f"answer {i}", "sample": 0} for i in range(test_rows)]
    put(store, "infer", 1, {"answers.jsonl": answers}, counts={"prompts": test_rows, "answers": test_rows})
    assert main(["evaluate", str(path), "--round", "1", "--plan"]) == 0
    out = capsys.readouterr().out
    print(out)
    assert (f"evaluate round 1, judge openai:gpt-4o-mini: {test_rows} answers x 2 repeats: {2 * test_rows} requests "
            "to openai:gpt-4o-mini") in out
    assert f"evaluate round 1, pairwise judge: {test_rows} answers x 2 orders: {2 * test_rows} requests" in out
    assert f"total: {4 * test_rows} requests to send" in out

    assert main(["run", str(path), "--plan"]) == 0
    out = capsys.readouterr().out
    print(out)
    assert "duo run, round 1" in out and "baseline (round 0)" in out and "evaluate round 0, judge" in out
    assert "synthesize round 1: 30 pairs" in out and f"evaluate round 1, judge openai:gpt-4o-mini: {test_rows}" in out

    assert fake_openai.log == []  # nothing was sent
    for stage in ("synthesize", "evaluate"):
        assert not store.exists(artifact_name(stage, 1))
    assert not store.exists(artifact_name("evaluate", 0))


def test_plan_counts_what_the_journal_already_holds(fake_openai, tmp_path, capsys):
    path = plan_config(tmp_path)
    cfg = load_config(path, ["synthesize.samples=6"])
    store = open_store(cfg)
    prepare.run(cfg, store)
    fake_openai.set_responder(lambda body: {"contents": [
        {"instruction": f"Write a note on topic {i} {len(str(body))}", "response": "A full answer. " * 8}
        for i in range(6)]})
    from pipeline.stages import synthesize
    synthesize.run(cfg, store, 1, samples=6)
    sent = len(fake_openai.log)
    capsys.readouterr()
    assert main(["synthesize", str(path), "--round", "1", "--plan", "--force", "--set", "synthesize.samples=6"]) == 0
    out = capsys.readouterr().out
    assert "1 requests to openai:gpt-4o-2024-08-06, 1 already answered in the journal (free), 0 to send" in out
    assert "total: 0 requests to send, at most $0.0000" in out
    assert len(fake_openai.log) == sent
