"""Hand-built round artifacts (prepare, synthesize, finetune, evaluate) for tests of the report and decide stages.

The shapes follow docs/contracts.md; values are chosen by each test so expected results can be computed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.config import load_config
from pipeline.manifest import Manifest
from pipeline.records import write_jsonl
from pipeline.store import LocalStore, artifact_name

CONFIG = """
task: {name: demo, description: general assistant}
data: {source: data.jsonl, columns: {instruction: instruction, response: output, category: dataset}}
student: {model: HuggingFaceTB/SmolLM2-135M-Instruct}
service:
  synthesize: {provider: openai, model: gpt-4o-mini}
  judge: {provider: openai, model: gpt-4o, price_input_per_1m: 2.5, price_output_per_1m: 10}
synthesize: {samples: 1000, growth: 2}
budget: {max_rounds: 3, max_synthetic_samples: 7000, max_spend_usd: 5.0}
"""


def make_config(folder: Path, overrides: list[str] | None = None, text: str = CONFIG):
    """Write the test config to ``folder/duo.yaml`` and load it (store under ``folder/.duo/demo``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "duo.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, overrides)


def put(store: LocalStore, stage: str, round_no: int | None, files: dict, *, counts: dict | None = None,
        cost: float = 0.0, extra: dict | None = None) -> Manifest:
    """Write one artifact: ``files`` maps a file name to rows (list -> JSONL), a dict (JSON) or text."""
    name = artifact_name(stage, round_no)
    m = Manifest.start(stage, name, "test", round_no)
    m.counts = counts or {}
    m.usage = {"requests": 1 if cost else 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": cost, "cached": 0}
    m.extra = extra or {}
    with store.write(name) as folder:
        for fname, content in files.items():
            path = folder / fname
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, list):
                write_jsonl(path, content)
            elif isinstance(content, dict):
                path.write_text(json.dumps(content, indent=2), encoding="utf-8")
            elif isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        m.finish(folder).write(folder)
    return m


def metrics(round_no: int, sim: float, prec: float, *, judge: bool = True, categories=("oasst", "dolly")) -> dict:
    """An evaluate ``metrics.json`` whose rule is mean similarity >= 90 and mean precision >= 90."""
    ms = {"similarity": sim, "precision": prec, "embedding": 0.7}
    if not judge:
        ms = {"embedding": 0.85, "rougeL": 0.31}
    summaries = {m: {"mean": v, "pass_rate": 0.4, "threshold": 90 if v > 1 else 0.8, "ci_low": round(v * 0.9, 3),
                     "ci_high": round(min(v * 1.1, 100), 3), "n": 4} for m, v in ms.items()}
    if judge:
        rule = [{"metric": m, "stat": "mean", "min": 90.0, "value": ms[m], "ok": ms[m] >= 90}
                for m in ("similarity", "precision")]
    else:
        rule = [{"metric": "embedding", "stat": "mean", "min": 0.8, "value": 0.85, "ok": True}]
    return {"round": round_no, "n": 4, "judge": "llm" if judge else "skipped", "judge_model": "gpt-4o" if judge
            else None, "metrics": summaries,
            "by_category": {c: {m: {"mean": round(v * (1 - 0.1 * i), 3), "pass_rate": 0.5, "n": 2} for m, v in ms.items()}
                            for i, c in enumerate(categories)},
            "rule": rule, "rule_kind": "judge" if judge else "offline",
            "verdict": "pass" if all(r["ok"] for r in rule) else "fail", "judge_failures": 0}


def score_rows(round_no: int, *, judge: bool = True) -> list[dict]:
    """Four scored test answers; ``t3`` has the lowest similarity and ``t2`` the lowest embedding score."""
    sims = {"t1": 95, "t2": 80, "t3": 40, "t4": 88}
    embs = {"t1": 0.9, "t2": 0.3, "t3": 0.6, "t4": 0.8}
    rows = []
    for i, key in enumerate(sims):
        scores = {"embedding": embs[key]}
        verdicts = []
        if judge:
            scores.update(similarity=sims[key], precision=sims[key] - 5)
            verdicts = [{"similarity": sims[key], "precision": sims[key] - 5,
                         "similarity_reason": f"reason-sim-{key}", "precision_reason": f"reason-prec-{key}"}]
        rows.append({"id": key, "instruction": f"Question {key}: explain | pipes\nand lines",
                     "category": "oasst" if i % 2 else "dolly", "reference": f"Service answer {key}",
                     "answer": f"Student answer {key} <b>", "scores": scores, "judge": verdicts})
    return rows


def build_round(store: LocalStore, round_no: int, *, sim: float = 71.2, prec: float = 80.0, kept: int = 1000,
                synth_cost: float = 0.5, judge_cost: float = 0.25, judge: bool = True, synthesize: bool = True,
                finetune: bool = True) -> None:
    """Artifacts of one round: synthesize (``kept`` rows), finetune (local adapter) and evaluate."""
    if synthesize:
        removed = {"empty": 1, "truncated": 0, "duplicate": 3, "near_duplicate": 2, "test_overlap": 1}
        put(store, "synthesize", round_no, {"data.jsonl": [], "removed.jsonl": [], "failures.jsonl": []},
            counts={"requested": kept, "kept": kept, "removed": removed}, cost=synth_cost)
    if finetune:
        put(store, "finetune", round_no, {"adapter/adapter_config.json": {"r": 8}, "README.md": "card"},
            counts={"train_rows": 100})
    put(store, "evaluate", round_no, {"metrics.json": metrics(round_no, sim, prec, judge=judge),
                                      "scores.jsonl": score_rows(round_no, judge=judge),
                                      "judge_failures.jsonl": []}, cost=judge_cost if judge else 0.0)


def build_prepare(store: LocalStore, *, train: int = 90, test: int = 4, cost: float = 0.0) -> None:
    put(store, "prepare", None, {"train.jsonl": [], "test.jsonl": [], "bad_rows.jsonl": []},
        counts={"rows": train + test + 1, "valid": train + test, "train": train, "test": test, "bad": 1}, cost=cost)
