"""``synthesize.targeting: canary_losses`` (issue 21, part 5): the live prompts the latest canary showed the student
losing on are preferred as seeds, with the service's answers and system prompts; without a canary, or with no loss,
the draw stays uniform and the manifest says why."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.config import load_config
from pipeline.data import seeds
from pipeline.manifest import Manifest
from pipeline.records import write_jsonl
from pipeline.store import LocalStore

CONFIG = "task: {name: bot}\ndata: {source: d.jsonl}\nstudent: {model: tiny}\nsynthesize: {targeting: canary_losses}\n"
TRAIN = [{"id": f"t{i}", "instruction": f"train question {i}", "response": f"answer {i}", "category": None,
          "system": None, "messages": []} for i in range(20)]


def canary(store: LocalStore, stamp: str, wins: list[float | None]) -> None:
    rows = [{"_key": f"g{i}", "instruction": f"live question {i}", "system": "Be brief.", "reference": f"service {i}",
             "answer": f"student {i}", "messages": [{"role": "system", "content": "Be brief."}], "win": w,
             "scores": {"rougeL": 0.5}} for i, w in enumerate(wins)]
    report = {"evidence": {"decision_metric": "win_rate", "threshold": None}, "verdict": {"next_weight": 0.0}}
    name = f"canary/{stamp}"
    m = Manifest.start("canary", name, "test")
    with store.write(name) as folder:
        (folder / "canary.json").write_text(json.dumps(report))
        write_jsonl(folder / "prompts.jsonl", rows)
        m.finish(folder).write(folder)


def test_the_latest_canarys_losses_are_half_the_seeds(tmp_path: Path):
    (tmp_path / "duo.yaml").write_text(CONFIG)
    cfg = load_config(tmp_path / "duo.yaml")
    store = LocalStore(tmp_path / "store")
    drawer, info = seeds.for_round(cfg, store, 2, TRAIN)
    assert info["targeting"] == "uniform" and "no canary yet" in info["why"]
    canary(store, "20261201T000000Z", [1.0, 1.0])  # an older canary: no losses
    canary(store, "20261202T000000Z", [0.0, 0.5, 0.0, None])
    drawer, info = seeds.for_round(cfg, store, 2, TRAIN)
    assert info["canary"] == {"artifact": "canary/20261202T000000Z", "losses": 2, "share": 0.5,
                              "seed_ids": ["canary:g0", "canary:g2"]}
    drawn = [drawer.draw(2, 0, i) for i in range(400)]
    live = [d for d in drawn if d["id"].startswith("canary:")]
    assert 160 <= len(live) <= 240  # SHARE 0.5 of 400 draws, within binomial bounds
    assert {d["response"] for d in live} == {"service 0", "service 2"} and live[0]["system"] == "Be brief."
    assert [d["id"] for d in drawn] == [drawer.draw(2, 0, i)["id"] for i in range(400)]  # a rerun draws the same
