"""Issue 20, parts 3 and 4: a loop that reacts to what it measured.

- A round significantly worse than the best round so far stops (``stop-regressed``), names the best
  round and the difference with its CI, and every adapter default (``duo pull``, ``duo export``, the
  report's Adapter section) takes the best round's adapter; ``budget.on_regression: continue`` goes on.
- A service whose replies the filters remove stops the loop for want of data (``stop-no-data``) with
  the filter that removed most and the counts, and the round still gets its report and decision:
  through the real synthesize stage against the fake OpenAI (a round that kept nothing), and from a
  round that was evaluated with a low yield.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.artifacts.decide import read_decision
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.stages import prepare, report
from pipeline.stages import run as run_stage
from pipeline.stages.export import pick
from pipeline.stats.decision_facts import decide_round
from pipeline.stats.decision_text import record
from pipeline.store import open_store
from tests.round_artifacts import build_baseline, build_prepare, build_round, make_config, put

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "alpaca_eval_sample.jsonl"


def decision(cfg, store, round_no: int) -> dict:
    return record(decide_round(cfg, store, round_no))


@pytest.fixture
def regressed(tmp_path):
    """Round 1 (similarity 71.2) and round 2, every test prompt scored 20% lower (60): significantly
    worse."""
    cfg = make_config(tmp_path)
    store = open_store(cfg)
    build_prepare(store)
    build_baseline(store)
    build_round(store, 1, sim=71.2, kept=1000)
    build_round(store, 2, sim=60.0, kept=2000, factor=0.8)
    return cfg, store


def test_a_round_worse_than_the_best_stops_and_round_ones_adapter_stays(regressed, tmp_path, capsys):
    cfg, store = regressed
    d = decision(cfg, store, 2)
    assert d["decision"] == "stop-regressed" and d["next_round"] is None
    # the paired difference is over the scores of the 4 test prompts (each 20% lower): -15.2 on average
    assert ("similarity is significantly worse than round 1, the best round so far (71.2): similarity vs "
            "round 1: -15.2 (95% CI") in d["reason"]
    assert "round 1's adapter stays the one to use" in d["reason"]
    assert (d["best"]["round"], d["best"]["this_mean"]) == (1, 60.0)
    assert d["best"]["vs_before"]["change"] == "worse"
    assert d["best"]["vs_before"]["ci_high"] < 0

    config = str(cfg.source_path)
    assert main(["decide", config, "--round", "2"]) == 0
    assert "decide round 2: stop-regressed" in capsys.readouterr().out
    assert read_decision(store, 2)["decision"] == "stop-regressed"

    # every adapter default takes round 1's: duo pull (no prompt: nothing is loaded), duo export, the report
    assert main(["pull", config]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "round 1: the best evaluated round on similarity, mean 71.2 (none promoted)"
    assert out[1].startswith("adapter: round 1, ")
    assert pick(cfg, store, None, False)[0] == 1
    report.run(cfg, store, 2)
    text = (store.open("round-2/report") / "report.md").read_text()
    adapter = text.split("## Adapter", 1)[1].split("## Lineage", 1)[0]
    assert "Use **round 1's adapter**: the best evaluated round on similarity, mean 71.2" in adapter
    assert f'PeftModel.from_pretrained(base, "{store.local_path("round-1/finetune") / "adapter"}")' in adapter
    own = store.local_path("round-2/finetune") / "adapter"
    assert f"This round's own adapter: local folder `{own}`" in adapter
    assert "**Decision: `stop-regressed`**" in text
    assert "Best so far: round 1 (similarity 71.2); this round 60, -15.2 [" in text
    assert "] vs round 1, worse." in text
    saved = json.loads((store.open("round-2/report") / "metrics.json").read_text())
    assert saved["use_adapter"]["round"] == 1


def test_on_regression_continue_goes_on(regressed, tmp_path):
    _, store = regressed
    cfg = make_config(tmp_path, ["budget.on_regression=continue"])
    d = decision(cfg, store, 2)
    assert (d["decision"], d["next_round"], d["next_samples"]) == ("continue", 3, 4000)
    assert "significantly worse than round 1" in d["reason"]
    assert "but budget.on_regression=continue" in d["reason"]


def test_an_evaluated_round_with_a_low_yield_stops_for_want_of_data(tmp_path):
    """The measured example: round 2 kept 51 of 200 asked (the length band removed 572 replayed pairs)."""
    cfg = make_config(tmp_path, ["synthesize.samples=100"])
    store = open_store(cfg)
    build_prepare(store)
    build_round(store, 1, kept=100)
    build_round(store, 2, sim=72.0, kept=51)
    put(store, "synthesize", 2, {"data.jsonl": []}, counts={
        "requested": 200, "kept": 51, "received": 625, "requests": 130, "failures": 2,
        "removed": {"empty": 0, "truncated": 0, "test_overlap": 1, "duplicate": 0,
                    "near_duplicate": 31, "semantic_contaminated": 0, "length_outlier": 572}})
    d = decision(cfg, store, 2)
    assert d["decision"] == "stop-no-data"
    assert ("kept 51 of 200 asked (26%; synthesize.min_yield=0.5), 625 pairs received from 130 "
            "requests: the length band removed the most, 572; near-duplicates 31; decontamination (test "
            "overlap) 1; 2 failed replies") in d["reason"]
    assert d["synthesis"]["removed"] == {"length_outlier": 572, "near_duplicate": 31, "test_overlap": 1}
    lenient = make_config(tmp_path, ["synthesize.samples=100", "synthesize.min_yield=0.25"])
    assert decision(lenient, store, 2)["decision"] == "continue"


# ------------------------------------------------------------------ through the real synthesize stage


def too_short(body: dict) -> dict:
    """The fake service: fresh pairs whose answers are far shorter than any seed's (below the length
    band)."""
    tag = abs(hash(json.dumps(body["messages"]))) % 10**8
    return {"contents": [{"instruction": f"Describe the lighthouse keeper number {tag}-{j} and the storm.",
                          "response": f"Keeper {tag}-{j} nodded."} for j in range(3)]}


def task_config(tmp_path: Path) -> Path:
    doc = {
        "task": {"name": "demo", "description": "helpful answers to general-assistant questions"},
        "data": {"source": str(SAMPLE), "test": {"size": 0.25, "seed": 3},
                 "columns": {"instruction": "instruction", "response": "output", "category": "dataset"}},
        "student": {"model": "m"},
        "service": {"synthesize": {"provider": "openai", "model": "gpt-4o", "rpm": None,
                                   "price_input_per_1m": 5.0, "price_output_per_1m": 15.0}},
        "synthesize": {"samples": 6, "pairs_per_request": 3, "max_attempts": 2, "seed": 1,
                       "decontaminate": {"semantic": False}},
        "budget": {"max_rounds": 3},
    }
    path = tmp_path / "duo.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_round_whose_replies_the_length_band_removes_is_reported_and_decided(fake_openai, tmp_path,
                                                                              capsys):
    cfg = load_config(task_config(tmp_path))
    store = open_store(cfg)
    prepare.run(cfg, store)
    build_baseline(store)
    build_round(store, 1, kept=6)  # round 1 trained and was evaluated (hand-built)
    fake_openai.set_responder(too_short)
    records = run_stage.run_round(cfg, store, 2, None, force=False, echo=lambda line: None)
    assert [(r.stage, r.status) for r in records] == [
        ("synthesize", "done"), ("finetune", "off"), ("infer", "off"), ("evaluate", "off"),
        ("report", "done"), ("decide", "done")]
    c = store.manifest("round-2/synthesize").counts
    assert c["kept"] == 0 and c["removed"]["length_outlier"] == c["received"] > 0
    d = read_decision(store, 2)
    assert d["decision"] == "stop-no-data" and d["next_round"] is None
    assert d["reason"].startswith(
        "round 2: synthesis added no rows, so it was not fine-tuned again; synthesis is not delivering "
        f"data: kept 0 of 12 asked (0%; synthesize.min_yield=0.5), {c['received']} pairs received from "
        f"{c['requests']} requests: the length band removed the most, {c['removed']['length_outlier']}; "
        "another round would ask the same source for more: widen synthesize.length_filter")
    text = (store.open("round-2/report") / "report.md").read_text()
    assert "# duo report: demo, round 2 (not evaluated)" in text
    assert "**Decision: `stop-no-data`**" in text
    assert "Best so far: round 1 (similarity 71.2); round 2 was not evaluated." in text
    assert "Use **round 1's adapter**" in text and "## Scores by metric" not in text
    capsys.readouterr()
    assert main(["report", str(cfg.source_path), "--round", "2"]) == 0  # the CLI reads it back
    out = capsys.readouterr().out
    assert "report round 2: not evaluated (synthesis added no rows), decision stop-no-data" in out
