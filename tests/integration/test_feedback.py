"""``duo feedback`` against the fake GitHub through PyGithub (issue 22, item 2): the report PR's review block,
ticked boxes and ``/duo label`` comments become ``round-N/feedback/labels.jsonl``; the report then shows people's
agreement with the judge (hand-computed below); the next round's seeds and training set use the labels; CSV import.
"""

import json

import pytest

from pipeline.artifacts import ARTIFACTS
from pipeline.cli import main
from pipeline.data import seeds
from pipeline.data.reviewed import drop_reviewed
from pipeline.data.trainset import training_rows
from pipeline.records import read_jsonl
from pipeline.store import open_store
from tests.round_artifacts import build_round, make_config, put

LATER = "2026-01-02T10:00:00Z"
TRAIN = [
    {"id": "c1", "instruction": "Question t3 explain the pipes and lines", "response": "a", "category": "dolly"},
    {"id": "c2", "instruction": "Bake a loaf of rye bread at home", "response": "b", "category": "oasst"},
    {"id": "c3", "instruction": "Name three rivers of France", "response": "c", "category": "dolly"},
]
SYNTHETIC = [
    {"id": "s1", "instruction": "Write a haiku about autumn leaves", "response": "x", "generator": "gpt-4o-mini"},
    {"id": "s2", "instruction": "List the planets of the solar system in order", "response": "y",
     "generator": "gpt-4o-mini"},
    {"id": "s3", "instruction": "List the planets of the solar system in order, please", "response": "y",
     "generator": "gpt-4o-mini"},  # a near copy of s2
    {"id": "s4", "instruction": "Explain how a bicycle gear works", "response": "z", "generator": "gpt-4o-mini"},
]


@pytest.fixture
def task(tmp_path, monkeypatch, fake_github):
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    cfg = make_config(tmp_path)
    store = open_store(cfg)
    put(store, "prepare", None, {"train.jsonl": TRAIN, "test.jsonl": [], "bad_rows.jsonl": []},
        counts={"rows": 7, "valid": 7, "train": 3, "test": 4, "bad": 0})
    build_round(store, 1, sim=71.2, prec=80)
    put(store, "synthesize", 1, {"data.jsonl": SYNTHETIC, "removed.jsonl": [], "failures.jsonl": []},
        counts={"requested": 4, "kept": 4, "removed": {}})
    return cfg, store


def tick(fake_github, *ids):
    pr = fake_github.pulls[0]
    for i in ids:
        pr["body"] = pr["body"].replace(f"- [ ] acceptable `{i}`", f"- [x] acceptable `{i}`")


def reviewed(fake_github, cfg):
    """The report PR opened, then a reviewer's work: boxes t1 and t4 ticked, labels in a comment, a review and a
    review comment, two bad commands and one by someone outside the repository."""
    assert main(["report", str(cfg.source_path), "--open-pr"]) == 0
    tick(fake_github, "t1", "t4")
    fake_github.add_comment(1, "alice", "Mostly fine.\n/duo label t3 bad wrong facts\n/duo label `t2` good", LATER)
    fake_github.add_review(1, "bob", "COMMENTED", body="/duo label s2 bad a refusal", when=LATER)
    fake_github.add_review_comment(1, "carol", "/duo label nope bad")
    fake_github.add_comment(1, "dave", "/duo label t1 meh")
    fake_github.add_comment(1, "mallory", "/duo label t1 bad", association="NONE")  # not a collaborator


def test_review_block_in_the_pr_body(task, fake_github):
    cfg, _ = task
    assert main(["report", str(cfg.source_path), "--open-pr", "--set", "report.review_worst=1",
                 "--set", "report.review_random=2"]) == 0
    body = fake_github.pulls[0]["body"]
    block = body[body.index("<!-- duo-review -->"):body.index("<!-- /duo-review -->")]
    assert "**Lowest by similarity**\n\n- [ ] acceptable `t3` (similarity 40): “Question t3: explain" in block
    assert block.count("- [ ] acceptable `") == 3 and "**A random sample**" in block


def test_labels_from_the_pr_then_agreement_in_the_report(task, fake_github, capsys):
    cfg, store = task
    reviewed(fake_github, cfg)
    capsys.readouterr()
    assert main(["feedback", str(cfg.source_path), "--round", "1", "--actor", "erin"]) == 0
    out, err = capsys.readouterr()
    labels = read_jsonl(store.open("round-1/feedback") / "labels.jsonl")
    got = sorted((r["id"], r["label"], r["who"], r["source"], r["reason"]) for r in labels)
    assert got == [("s2", "bad", "bob", "comment", "a refusal"), ("t1", "good", "erin", "pr_body", None),
                   ("t2", "good", "alice", "comment", None), ("t3", "bad", "alice", "comment", "wrong facts"),
                   ("t4", "good", "erin", "pr_body", None)]
    assert {r["when"] for r in labels if r["source"] == "comment"} == {LATER}
    # the bad commands: skipped, one line each naming the comment, kept in skipped.jsonl
    warnings = err.strip().splitlines()
    assert len(warnings) == 3, err
    assert "#issuecomment-" in warnings[0] and "dave" in warnings[0] and "label 'meh' is not good or bad" in warnings[0]
    assert "mallory is not a member or collaborator" in warnings[1]
    assert "#discussion_r" in warnings[2] and "carol" in warnings[2] and "unknown id 'nope'" in warnings[2]
    assert len(read_jsonl(store.open("round-1/feedback") / "skipped.jsonl")) == 3
    counts = store.manifest("round-1/feedback").counts
    assert (counts["labels"], counts["good"], counts["bad"], counts["skipped"]) == (5, 3, 2, 3)
    assert "feedback round 1: 5 labels (3 good, 2 bad) from pull request #1; 3 skipped" in out

    # rerun without the actor (nor a round: the latest evaluated): ticks already stored keep who ticked them
    assert main(["feedback", str(cfg.source_path)]) == 0
    again = read_jsonl(store.open("round-1/feedback") / "labels.jsonl")
    assert sorted(map(json.dumps, again)) == sorted(map(json.dumps, labels))

    # The report: judge "acceptable" = similarity >= 90 -> t1 only. People: t1 t2 t4 good, t3 bad.
    # accuracy = 2/4 = 0.5; p_people = 3/4, p_judge = 1/4, p_e = 3/16 + 3/16 = 0.375, kappa = 0.125 / 0.625 = 0.2
    assert main(["report", str(cfg.source_path), "--open-pr"]) == 0
    md = (cfg.resolve(cfg.report.dir) / "demo" / "round-1" / "report.md").read_text()
    assert "## People and the judge" in md
    assert "| accuracy (share called alike) | 50% |" in md and "| Cohen's κ | 0.2 |" in md
    assert "| people: good | 1 | 2 |" in md and "| people: bad | 0 | 1 |" in md
    assert "Fewer than 5 labelled answers" in md
    body = fake_github.pulls[0]["body"]
    assert "### People and the judge" in body and "| Cohen's κ | 0.2 |" in body
    # the rerendered body keeps what people said: good labels ticked, t3 (bad) not
    assert all(f"- [x] acceptable `{i}`" in body for i in ("t1", "t2", "t4"))
    assert "- [ ] acceptable `t3`" in body


def test_next_round_seeds_and_training_set_use_the_labels(task, fake_github):
    cfg, store = task
    reviewed(fake_github, cfg)
    assert main(["feedback", str(cfg.source_path), "--pr", "1"]) == 0
    train = read_jsonl(store.open("prepare") / "train.jsonl")
    drawer, info = seeds.for_round(cfg, store, 2, train)
    assert info["feedback"] == {"bad_prompts": 1, "preferred_seeds": 1, "share": 0.5, "seed_ids": ["c1"]}
    drawn = [drawer.draw(2, 0, i)["id"] for i in range(400)]
    assert 0.55 < drawn.count("c1") / 400 < 0.75  # half the draws, plus its third of the uniform half
    assert seeds.for_round(cfg, store, 1, train)[1].get("feedback") is None  # round 1's own labels: from round 2
    # training: s2 (bad) and its near copy s3 leave round 2's training set; coverage rows stay
    kept, counts = drop_reviewed(store, 2, training_rows(store, 2))
    assert counts == {"bad": 1, "near_duplicate": 1}
    assert [r["id"] for r in kept] == ["c1", "c2", "c3", "s1", "s4"]
    # and the labels are parents of round 2's synthesis and training (a new label redoes them)
    for stage in ("synthesize", "finetune"):
        parents = [p.artifact for p in ARTIFACTS[stage].inputs(cfg, store, 2).parents]
        assert "round-1/feedback" in parents, stage
        assert "round-1/feedback" not in [p.artifact for p in ARTIFACTS[stage].inputs(cfg, store, 1).parents]


def test_csv_import_adds_labels_and_bad_rows_are_one_line(task, tmp_path, capsys):
    cfg, store = task
    good = tmp_path / "labels.csv"
    good.write_text("id,label,reason\nt2,bad,too long\ns1,Good,\n", encoding="utf-8")
    assert main(["feedback", str(cfg.source_path), "--round", "1", "--import", str(good)]) == 0
    labels = read_jsonl(store.open("round-1/feedback") / "labels.jsonl")
    assert [(r["id"], r["label"], r["reason"], r["source"], r["who"]) for r in labels] == [
        ("t2", "bad", "too long", "import", "import:labels.csv"), ("s1", "good", None, "import", "import:labels.csv")]
    capsys.readouterr()
    for text, expected in (("id,label\nt1,good\nzzz,bad\n", "row 3: unknown id 'zzz'"),
                           ("id,label\nt1,okay\n", "row 2: label 'okay' is not good or bad"),
                           ("name,label\nt1,good\n", "missing column(s) id")):
        bad = tmp_path / "bad.csv"
        bad.write_text(text, encoding="utf-8")
        assert main(["feedback", str(cfg.source_path), "--round", "1", "--import", str(bad)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "bad.csv: " in err[0] and expected in err[0], err
    assert read_jsonl(store.open("round-1/feedback") / "labels.jsonl") == labels  # nothing stored is lost


def test_the_next_synthesis_asks_with_seeds_near_the_prompts_people_marked_bad(tmp_path, fake_openai):
    """End to end through ``synthesize``: a test prompt marked bad in round 1 (CSV import) steers round 2's seeds
    to its nearest train rows; no test prompt is ever sent."""
    from pipeline.config import load_config
    from pipeline.data.seeds_feedback import preferred_rows
    from pipeline.stages import prepare, synthesize
    from tests.integration.test_synthesize import make_config as synth_config
    from tests.integration.test_synthesize import seeds_asked

    path = synth_config(tmp_path, decontaminate={"semantic": False})
    cfg = load_config(path, ["privacy.scrub=false"])  # neither the embedding model nor presidio is needed here
    store = open_store(cfg)
    prepare.run(cfg, store)
    train = read_jsonl(store.open("prepare") / "train.jsonl")
    test = read_jsonl(store.open("prepare") / "test.jsonl")
    bad = test[0]
    scores = [{"id": r["id"], "instruction": r["instruction"], "scores": {"rougeL": 0.5}} for r in test]
    put(store, "evaluate", 1, {"scores.jsonl": scores, "metrics.json": {"verdict": "fail", "decision_metric": "rougeL"}})
    labels = tmp_path / "labels.csv"
    labels.write_text(f"id,label,reason\n{bad['id']},bad,misses the point\n", encoding="utf-8")
    assert main(["feedback", str(path), "--round", "1", "--import", str(labels)]) == 0
    near = {r["instruction"] for r in preferred_rows(train, [bad])}
    assert near
    asked = seeds_asked(fake_openai)
    m = synthesize.run(cfg, store, 2, samples=30)
    assert m.extra["seeds"]["feedback"]["bad_prompts"] == 1
    assert m.extra["seeds"]["feedback"]["preferred_seeds"] == len(near)
    share = sum(a in near for a in asked) / len(asked)
    assert share > 0.35, (share, len(asked))  # half the draws, less chance: a uniform draw would hit ~3/len(train)
    assert not set(asked) & {r["instruction"] for r in test}
