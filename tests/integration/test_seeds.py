"""``finetune.seeds`` on the tiny model (issue #20, part 6): one adapter per training seed, each answers
the test prompts, evaluate writes the spread between seeds and the report shows it beside the round's
change. Without the key the artifacts and fingerprints are as before."""

from __future__ import annotations

import json

import pytest
import yaml

from pipeline.artifacts import ARTIFACTS
from pipeline.cli import main
from pipeline.config import build_config
from pipeline.errors import DuoError
from pipeline.records import read_jsonl
from pipeline.stages import evaluate, finetune, infer, report
from pipeline.store import LocalStore
from tests.model_fixtures import make_prepare, qa_rows, tiny_config

N_TEST = 5
STEPS = 6
OFFLINE = {"metrics": ["rougeL", "bleu"], "bootstrap_samples": 200,
           "offline_pass_rule": [{"metric": "rougeL", "min": 0.5}]}


def seeds_config(base, model_dir, seeds):
    sft = {"max_steps": STEPS, "learning_rate": 1e-2, "warmup_steps": 0, "max_length": 128}
    return tiny_config(base, model_dir, finetune={"seeds": seeds, "sft": sft}, evaluate=OFFLINE)


def tensors(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, tiny_model_dir):
    """Round 0 (the base) and round 1 trained with seeds [1, 2], answered, evaluated and reported."""
    base = tmp_path_factory.mktemp("seeds")
    cfg = seeds_config(base, tiny_model_dir, [1, 2])
    store = LocalStore(base / "store")
    make_prepare(store, qa_rows(24), qa_rows(N_TEST, seed=1, prefix="e"))
    for round_no in (0, 1):
        if round_no:
            finetune.run(cfg, store, round_no)
        infer.run(cfg, store, round_no)
        evaluate.run(cfg, store, round_no)
    report.run(cfg, store, 1)
    return cfg, store


def test_two_seeds_train_two_adapters_that_differ(seeded):
    _, store = seeded
    folder = store.open("round-1/finetune")
    first, second = folder / "adapter", folder / "seeds" / "2" / "adapter"
    assert not (folder / "seeds" / "1").exists()  # the first seed's is the round's adapter, where it was
    for adapter in (first, second):
        assert (adapter / "adapter_config.json").is_file() and (adapter / "tokenizer_config.json").is_file()
    a, b = tensors(first), tensors(second)
    assert a.keys() == b.keys() and any(not a[k].equal(b[k]) for k in a)
    m = store.manifest("round-1/finetune")
    runs = m.extra["seeds"]
    assert [(r["seed"], r["adapter"], r["steps"]) for r in runs] == [(1, "adapter", STEPS),
                                                                    (2, "seeds/2/adapter", STEPS)]
    assert all(isinstance(r["last_loss"], float) and isinstance(r["first_loss"], float) for r in runs)
    assert runs[0]["last_loss"] == m.extra["last_loss"] and m.extra["sft"]["seed"] == 1
    log = (folder / "seeds" / "2" / "train_log.jsonl").read_text().splitlines()
    losses = [row["loss"] for row in map(json.loads, log) if "loss" in row]
    assert losses[-1] == pytest.approx(runs[1]["last_loss"], abs=1e-3)
    assert "seeds/2/adapter/adapter_model.safetensors" in m.files


def test_a_seed_trained_alone_gives_the_same_adapter(seeded, tiny_model_dir, tmp_path):
    """Each run is seeded before its model loads, so the order the seeds train in changes nothing; a
    single seed keeps today's layout (no seeds/ folder, no extra.seeds)."""
    _, store = seeded
    cfg = seeds_config(tmp_path, tiny_model_dir, [2])
    alone = LocalStore(tmp_path / "store")
    make_prepare(alone, qa_rows(24), qa_rows(N_TEST, seed=1, prefix="e"))
    m = finetune.run(cfg, alone, 1)
    folder = alone.open("round-1/finetune")
    assert not (folder / "seeds").exists() and "seeds" not in m.extra and m.extra["sft"]["seed"] == 2
    a, b = tensors(folder / "adapter"), tensors(store.open("round-1/finetune") / "seeds" / "2" / "adapter")
    assert all(a[k].equal(b[k]) for k in a)


def test_infer_answers_with_each_seed(seeded):
    _, store = seeded
    answers = read_jsonl(store.open("round-1/infer") / "answers.jsonl")
    assert len(answers) == 2 * N_TEST
    assert [a["seed"] for a in answers] == [1] * N_TEST + [2] * N_TEST
    assert [a["id"] for a in answers[:N_TEST]] == [a["id"] for a in answers[N_TEST:]]
    assert {a["sample"] for a in answers} == {0}  # sample counts within a seed
    m = store.manifest("round-1/infer")
    assert (m.counts["answers"], m.counts["prompts"], m.extra["seeds"]) == (2 * N_TEST, N_TEST, [1, 2])
    base = read_jsonl(store.open("round-0/infer") / "answers.jsonl")
    assert len(base) == N_TEST and all("seed" not in a for a in base)  # round 0 has no adapter, no seeds


def test_evaluate_writes_the_spread_between_seeds(seeded):
    _, store = seeded
    folder = store.open("round-1/evaluate")
    metrics = json.loads((folder / "metrics.json").read_text())
    scores = read_jsonl(folder / "scores.jsonl")
    assert [r["seed"] for r in scores] == [1] * N_TEST + [2] * N_TEST
    assert metrics["n"] == N_TEST and metrics["answers"] == 2 * N_TEST  # the prompt stays the unit
    spread = metrics["seed_spread"]
    assert list(spread) == ["rougeL", "bleu"]
    for metric, s in spread.items():
        means = {seed: sum(r["scores"][metric] for r in scores if r["seed"] == seed) / N_TEST
                 for seed in (1, 2)}
        assert s["per_seed"] == {str(k): pytest.approx(v, abs=1e-6) for k, v in means.items()}
        assert s["spread"] == pytest.approx(abs(means[1] - means[2]), abs=1e-6) and s["n"] == N_TEST
        # the round's mean averages both seeds per prompt
        assert metrics["metrics"][metric]["mean"] == pytest.approx((means[1] + means[2]) / 2, abs=1e-6)
    base = json.loads((store.open("round-0/evaluate") / "metrics.json").read_text())
    assert "seed_spread" not in base and all("seed" not in r for r in read_jsonl(
        store.open("round-0/evaluate") / "scores.jsonl"))


def test_report_shows_the_spread_beside_the_change(seeded):
    cfg, store = seeded
    text = (store.open("round-1/report") / "report.md").read_text(encoding="utf-8")
    assert "## Spread between training seeds" in text
    section = text.split("## Spread between training seeds", 1)[1].split("\n## ", 1)[0]
    assert "vs the untuned base" in section and f"the {N_TEST} prompts every seed scored" in section
    assert "| metric | seed 1 | seed 2 | spread (max − min) | change | beyond the spread? |" in section
    rows = [line for line in section.splitlines() if line.startswith(("| rougeL |", "| bleu |"))]
    assert len(rows) == 2 and all(line.count("|") == 7 for line in rows), rows
    assert all(line.rstrip(" |").endswith(("yes", "no: may be seed noise")) for line in rows), rows
    base = store.open(report.run(cfg, store, 0).artifact) / "report.md"
    assert "Spread between training seeds" not in base.read_text()


def test_without_seeds_the_fingerprints_are_as_before(tmp_path, tiny_model_dir):
    """A store made before finetune.seeds existed keeps its fingerprints: unset (or null) the key is in
    no artifact's config; set, it changes finetune's only (infer and later follow through their
    parents)."""
    plain = tiny_config(tmp_path, tiny_model_dir)
    null = tiny_config(tmp_path, tiny_model_dir, finetune={"seeds": None})
    two = tiny_config(tmp_path, tiny_model_dir, finetune={"seeds": [1, 2]})
    assert plain.finetune.seeds is None and two.finetune.seeds == [1, 2]
    ft = ARTIFACTS["finetune"]
    assert "seeds" not in ft.config(plain)["finetune"] and ft.config(plain) == ft.config(null)
    assert ft.config(two)["finetune"]["seeds"] == [1, 2]
    for stage in set(ARTIFACTS) - {"finetune"}:
        assert ARTIFACTS[stage].config(two) == ARTIFACTS[stage].config(plain), stage


def test_repeated_seeds_are_one_line_error(tmp_path, capsys):
    doc = {"task": {"name": "t"}, "data": {"source": "d.jsonl"}, "student": {"model": "m"},
           "finetune": {"seeds": [3, 3]}}
    with pytest.raises(DuoError, match=r"^finetune.seeds: found \[3, 3\]; expected no repeated items$"):
        build_config(doc, base_dir=tmp_path)
    path = tmp_path / "duo.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].endswith("duo.yaml: finetune.seeds: found [3, 3]; expected no repeated items"), err
