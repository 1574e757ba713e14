"""A budget smaller than one request (issue 19, item 7): the cap refuses every synthesis request, so round 1 stops
(``stop-budget``) before training instead of saying ``continue`` with $0 spent and the next round estimated at $0.
Against the fake OpenAI server, through the real synthesize stage and ``duo run``'s round."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.artifacts.decide import read_decision
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.stages import prepare, synthesize
from pipeline.stages import run as run_stage
from pipeline.store import artifact_name, open_store

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "alpaca_eval_sample.jsonl"
CAP = 0.001  # one request may cost up to ~$0.03 here (2 000 prompt tokens + 1 000 reply tokens at $5/$15 per 1M)


def make_config(tmp_path: Path) -> Path:
    doc = {
        "task": {"name": "demo", "description": "helpful answers to general-assistant questions"},
        "data": {"source": str(SAMPLE), "test": {"size": 0.25, "seed": 3},
                 "columns": {"instruction": "instruction", "response": "output", "category": "dataset"}},
        "student": {"model": "m"},
        "service": {"synthesize": {"provider": "openai", "model": "gpt-4o", "rpm": None,
                                   "price_input_per_1m": 5.0, "price_output_per_1m": 15.0,
                                   "params": {"max_tokens": 1000}}},
        "synthesize": {"samples": 30, "pairs_per_request": 6, "seed": 1},
        "budget": {"max_spend_usd": CAP},
    }
    path = tmp_path / "duo.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_budget_smaller_than_one_request_stops_round_one_before_training(fake_openai, tmp_path, monkeypatch,
                                                                            capsys):
    cfg = load_config(make_config(tmp_path))
    store = open_store(cfg)
    prepare.run(cfg, store)
    ran = []

    class Stage:
        """Synthesize, report and decide for real; any other stage would be a bug (it must not run)."""

        def __init__(self, name):
            self.name = name

        def run(self, cfg, store, round_no, force=False, **kw):
            ran.append(self.name)
            from pipeline.stages import decide, report
            stages = {"synthesize": synthesize, "report": report, "decide": decide}
            return stages[self.name].run(cfg, store, round_no, **kw)

    monkeypatch.setattr(run_stage, "_stage_module", Stage)
    records = run_stage.run_round(cfg, store, 1, None, force=False, echo=lambda line: None)
    assert fake_openai.log == []  # the cap refused every request: nothing was sent
    m = store.manifest(artifact_name("synthesize", 1))
    assert (m.counts["kept"], m.counts["requests"], m.extra["stopped"]) == (0, 0, "budget")
    assert ran == ["synthesize", "report", "decide"]  # issue 20: the round that stops is reported too
    assert [r.status for r in records] == ["done", "off", "off", "off", "done", "done"]
    d = read_decision(store, 1)
    assert d["decision"] == "stop-budget" and d["next_round"] is None
    assert ("so it was not fine-tuned: the spend cap refused every request (none was sent): the $0.0010 left of "
            "budget.max_spend_usd=$0.0010 cannot pay for one; raise the budget to go on") in d["reason"]

    capsys.readouterr()
    assert main(["finetune", str(cfg.source_path), "--round", "1"]) == 1  # the workflow's finetune job refuses too
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [("error: round 1: the spend cap (budget.max_spend_usd=$0.0010) refused every synthesis request, "
                    "so there is nothing new to train; raise the budget to go on")]
