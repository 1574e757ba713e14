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
        cost: float = 0.0, extra: dict | None = None, requests: int | None = None) -> Manifest:
    """Write one artifact: ``files`` maps a file name to rows (list -> JSONL), a dict (JSON) or text; ``requests``
    (default 1 when it cost something) are the paid service requests in its usage."""
    name = artifact_name(stage, round_no)
    m = Manifest.start(stage, name, "test", round_no)
    m.counts = counts or {}
    m.usage = {"requests": (1 if cost else 0) if requests is None else requests, "input_tokens": 0, "output_tokens": 0, "cost_usd": cost, "cached": 0}
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


BASE = {"similarity": 50.0, "precision": 60.0, "embedding": 0.6, "rougeL": 0.2}  # round 0's means


def _summaries(means: dict) -> dict:
    return {m: {"mean": v, "pass_rate": 0.4, "threshold": 90 if v > 1 else 0.8, "ci_low": round(v * 0.9, 3),
                "ci_high": round(min(v * 1.1, 100), 3), "n": 4, "samples": 4} for m, v in means.items()}


def _diffs(means: dict, other: dict | None) -> dict:
    """Paired differences ``means - other`` with a CI of +-10% of the larger mean (judge scale) and its word."""
    out = {}
    for m, v in means.items():
        if other is None or other.get(m) is None:
            continue
        diff, half = round(v - other[m], 6), round(0.1 * max(v, other[m]), 6)
        low, high = round(diff - half, 6), round(diff + half, 6)
        out[m] = {"diff": diff, "ci_low": low, "ci_high": high, "n": 4, "sd": half,
                  "change": "better" if low > 0 else "worse" if high < 0 else "no detectable change"}
    return out


def metrics(round_no: int, sim: float, prec: float, *, judge: bool = True, categories=("oasst", "dolly"),
            previous: tuple[int, dict] | None = None, baseline: bool = False) -> dict:
    """An evaluate ``metrics.json`` whose rule is mean similarity >= 90 and mean precision >= 90 (offline: mean
    embedding >= 0.8), compared with ``BASE`` (round 0) when ``baseline`` and with ``previous`` (round, means)."""
    ms = {"similarity": sim, "precision": prec, "embedding": 0.7}
    if not judge:
        ms = {"embedding": 0.85, "rougeL": 0.31}
    summaries = _summaries(ms)
    if judge:
        rule = [{"metric": m, "stat": "mean", "vs": None, "min": 90.0, "above": None, "value": ms[m],
                 "ok": ms[m] >= 90} for m in ("similarity", "precision")]
    else:
        rule = [{"metric": "embedding", "stat": "mean", "vs": None, "min": 0.8, "above": None, "value": 0.85,
                 "ok": True}]
    key = rule[0]["metric"]
    out = {"round": round_no, "baseline_round": 0, "previous_round": previous[0] if previous else None, "n": 4,
           "answers": 4, "judge": "llm" if judge else "skipped", "judge_model": "gpt-4o" if judge else None,
           "judge_repeats": 1 if judge else 0, "metrics": summaries,
           "by_category": {c: {m: {"mean": round(v * (1 - 0.1 * i), 3), "pass_rate": 0.5, "n": 2}
                               for m, v in ms.items()} for i, c in enumerate(categories)},
           "decision_metric": key, "rule": rule, "rule_kind": "judge" if judge else "offline",
           "verdict": "pass" if all(r["ok"] for r in rule) else "fail", "judge_failures": 0}
    if baseline and round_no > 0:
        base = {m: BASE[m] for m in ms if m in BASE}
        out["baseline"] = {m: {k: s[k] for k in ("mean", "ci_low", "ci_high", "n")}
                           for m, s in _summaries(base).items()}
        out["vs_baseline"] = _diffs(ms, base)
    out["vs_previous"] = _diffs(ms, previous[1]) if previous else {}
    d = out.get("vs_baseline", {}).get(key) or out["vs_previous"].get(key) or {}
    s = summaries[key]
    out["power"] = {"n": 4, "ci_half_width": round((s["ci_high"] - s["ci_low"]) / 2, 6), "prompts_to_halve": 16,
                    "paired_sd": d.get("sd"), "diff_half_width": d.get("sd"),
                    "detectable_difference": None if d.get("sd") is None else round(1.4 * d["sd"], 6),
                    "can_decide": s["ci_low"] >= 90 or s["ci_high"] < 90 if judge else True}
    return out


def _previous(store: LocalStore, round_no: int) -> tuple[int, dict] | None:
    """(round, metric means) of the last evaluated round before ``round_no``, as ``evaluate`` finds it."""
    for k in range(round_no - 1, -1, -1):
        name = artifact_name("evaluate", k)
        if store.exists(name):
            try:
                doc = json.loads((store.open(name) / "metrics.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            return k, {m: s.get("mean") for m, s in (doc.get("metrics") or {}).items()}
    return None


def score_rows(round_no: int, *, judge: bool = True, factor: float = 1.0) -> list[dict]:
    """Four scored test answers; ``t3`` has the lowest similarity and ``t2`` the lowest embedding score
    (every score times ``factor``: round 0 scores lower)."""
    sims = {k: round(v * factor, 3) for k, v in {"t1": 95, "t2": 80, "t3": 40, "t4": 88}.items()}
    embs = {k: round(v * factor, 3) for k, v in {"t1": 0.9, "t2": 0.3, "t3": 0.6, "t4": 0.8}.items()}
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
                finetune: bool = True, train_rows: int = 100, extra: dict | None = None, cut: int = 0,
                factor: float = 1.0) -> None:
    """Artifacts of one round: synthesize (``kept`` rows), finetune (local adapter, ``train_rows`` rows) and
    evaluate (compared with the last evaluated round before it; ``extra`` replaces keys of its metrics.json;
    ``factor`` scales every score in its scores.jsonl)."""
    if synthesize:
        removed = {"empty": 1, "truncated": 0, "duplicate": 3, "near_duplicate": 2, "test_overlap": 1}
        put(store, "synthesize", round_no, {"data.jsonl": [], "removed.jsonl": [], "failures.jsonl": []},
            counts={"requested": kept, "kept": kept, "removed": removed}, cost=synth_cost,
            requests=max(1, -(-kept // 5)) if synth_cost else 0)  # 5 pairs a request (the default)
    if finetune:
        put(store, "finetune", round_no, {"adapter/adapter_config.json": {"r": 8}, "README.md": "card"},
            counts={"train_rows": train_rows, "rows_given": train_rows + cut, "synthetic_rows": kept,
                    "truncated": cut, "prompt_too_long": 0}, extra={"lengths": {"max_length": 256}})
    doc = {**metrics(round_no, sim, prec, judge=judge, previous=_previous(store, round_no),
                    baseline=store.exists(artifact_name("evaluate", 0))), **(extra or {})}
    put(store, "evaluate", round_no, {"metrics.json": doc,
                                      "scores.jsonl": score_rows(round_no, judge=judge, factor=factor),
                                      "judge_failures.jsonl": []}, cost=judge_cost if judge else 0.0,
        requests=12 if judge and judge_cost else 0)  # 4 test prompts x 3 repeats


def build_prepare(store: LocalStore, *, train: int = 90, test: int = 4, cost: float = 0.0) -> None:
    put(store, "prepare", None, {"train.jsonl": [], "test.jsonl": [], "bad_rows.jsonl": []},
        counts={"rows": train + test + 1, "valid": train + test, "train": train, "test": test, "bad": 1}, cost=cost)


def build_baseline(store: LocalStore, *, judge: bool = True) -> None:
    """Round 0, the untuned base: infer (no adapter) and evaluate with the ``BASE`` means and lower scores."""
    put(store, "infer", 0, {"answers.jsonl": []}, counts={"prompts": 4, "answers": 4})
    doc = metrics(0, BASE["similarity"], BASE["precision"], judge=judge)
    base = {m: BASE[m] for m in doc["metrics"]}
    doc["metrics"] = _summaries(base)
    doc["rule"] = [{**r, "value": base[r["metric"]], "ok": base[r["metric"]] >= r["min"]} for r in doc["rule"]]
    doc["verdict"] = "pass" if all(r["ok"] for r in doc["rule"]) else "fail"
    doc["by_category"] = {c: {m: {**s, "mean": round(s["mean"] * 0.7, 3)} for m, s in v.items()}
                          for c, v in doc["by_category"].items()}
    put(store, "evaluate", 0, {"metrics.json": doc, "scores.jsonl": score_rows(0, judge=judge, factor=0.6),
                               "judge_failures.jsonl": []})
