"""The judges in pipeline/judging*.py against the fake services: absolute (parity with evaluate's judge), pairwise
(both orders, position bias gives ties), a two-provider panel (agreement, flags) and journal reuse."""

from __future__ import annotations

import json

import pytest

from pipeline.config import build_config
from pipeline.judging.absolute import judge_absolute
from pipeline.judging.pairwise import judge_pairwise, win_rate_counts
from pipeline.judging.panel import (
    DISAGREE_THRESHOLD,
    judge_journal,
    judge_labels,
    judge_panel,
    krippendorff_alpha_interval,
)
from pipeline.manifest import Manifest
from pipeline.stages import evaluate
from pipeline.store import LocalStore
from tests.fakes.openai_fixtures import service_cfg

PRICE_IN, PRICE_OUT = 2.5, 10.0
OFF_SCALE = "OFF-THE-SCALE"
ROWS = [  # key, category, reference (the service's answer), answer (the student's), the judges' base score
    ("t1", "howto", "Open Settings, choose Security, then click Reset password.",
     "Open Settings, choose Security, then click Reset password.", 92),
    ("t2", "howto", "Press Ctrl+S to save the file.", "Press Ctrl+S to save your file.", 85),
    ("t3", "facts", "Paris is the capital of France.", "The capital of France is Lyon.", 20),
    ("t4", "facts", "Water boils at 100 degrees Celsius at sea level.", f"I am not sure. {OFF_SCALE}", 50),
    ("t5", None, "Mount Everest is 8,849 metres tall.", "Everest is about 8,849 metres high.", 78),
    ("t6", "facts", "The Pacific is the largest ocean.", "Bananas are yellow.", 5),
]
BASE = {r[0]: r[4] for r in ROWS}
STUDENT = {r[0]: r[3] for r in ROWS}


def rows(answers=ROWS) -> list[dict]:
    return [{"_key": k, "id": k, "instruction": f"Question {k}?", "reference": ref, "answer": ans, "category": cat}
            for k, cat, ref, ans, _ in answers]


def make_config(tmp_path, *, repeats=2, max_spend_usd=10.0):
    doc = {
        "task": {"name": "demo"}, "data": {"source": "data.jsonl"}, "student": {"model": "tiny"},
        "store": {"path": str(tmp_path / "store")}, "budget": {"max_spend_usd": max_spend_usd},
        "evaluate": {"judge_repeats": repeats, "metrics": ["similarity", "precision"]},
        "service": {"judge": {"provider": "openai", "model": "gpt-4o", "rpm": None, "concurrency": 4,
                              "price_input_per_1m": PRICE_IN, "price_output_per_1m": PRICE_OUT,
                              "max_retries": 2, "schema_retries": 1, "timeout_s": 10}},
    }
    return build_config(doc, base_dir=tmp_path)


def judge(provider: str, model: str | None = None):
    return service_cfg(provider, model, rpm=None, concurrency=4, max_retries=2, schema_retries=1, timeout_s=10,
                       price_input_per_1m=PRICE_IN, price_output_per_1m=PRICE_OUT)


def first_user(body: dict) -> str:
    """The first user text of an OpenAI or Gemini request body (later ones are re-asks)."""
    if "messages" in body:
        return next(m for m in body["messages"] if m["role"] == "user")["content"]
    return body["contents"][0]["parts"][0]["text"]


def row_key(body: dict) -> str:
    return first_user(body).split("# Instruction", 1)[1].strip().split()[1].rstrip("?")


def section(text: str, title: str, after: str | None) -> str:
    part = text.split(f"# {title}", 1)[1]
    return (part.split(f"# {after}", 1)[0] if after else part).strip()


def shifted(key: str, offset: float) -> int:
    return int(min(100, max(1, BASE[key] + offset)))


def erratic(key: str) -> int:
    """40 points off the base score, towards the middle of the scale: off, and blind to which answer is good."""
    return shifted(key, -40 if BASE[key] >= 50 else 40)


def absolute_responder(offset: float = 0.0, score_of=None):
    """Scores the row's base score (+ offset, kept in 1-100; or ``score_of(key)``); one answer always gets an
    out-of-range score."""
    def respond(body: dict):
        if OFF_SCALE in section(first_user(body), "Candidate answer", None):
            return {"similarity_assessment": {"score": 150, "reason": "off"},
                    "precision_assessment": {"score": 150, "reason": "off"}}
        key = row_key(body)
        score = score_of(key) if score_of else shifted(key, offset)
        return {"similarity_assessment": {"score": score, "reason": f"sim {score}"},
                "precision_assessment": {"score": max(1, score - 5), "reason": f"prec {score}"}}
    return respond


def chat_requests(fake) -> list[dict]:
    return [r for r in fake.log if r["path"].endswith("/chat/completions")]


# --------------------------------------------------------------------------- absolute


def test_absolute_judge_matches_evaluates_judge_and_reuses_its_journal(tmp_path, fake_openai):
    fake_openai.set_responder(absolute_responder())
    cfg, data = make_config(tmp_path), rows()
    store = LocalStore(tmp_path / "store")
    journal = store.journal_dir / "round-1-evaluate.jsonl"  # the name evaluate gives its journal

    new = judge_absolute(cfg, store, cfg.service.judge, data, journal=journal, artifact_name="round-1/evaluate")

    # the behaviour evaluate's judge has: 2 repeats per row, the out-of-range answer recorded with its raw text
    assert new.verdicts["t1"] == [{"similarity": 92.0, "precision": 87.0, "similarity_reason": "sim 92",
                                   "precision_reason": "prec 92", "repeat": k} for k in (0, 1)]
    assert new.verdicts["t4"] == [] and sorted(f["repeat"] for f in new.failures) == [0, 1]
    assert all(f["id"] == "t4" and '"score": 150' in f["raw"] and f["attempts"] == 2 and f["error"]
               for f in new.failures)
    assert new.scores([r["_key"] for r in data])["similarity"] == [92.0, 85.0, 20.0, None, 78.0, 5.0]
    assert new.unsent == 0 and not new.stopped
    rep = fake_openai.reported
    assert new.usage["requests"] == 12  # items, as in evaluate's manifests; the service saw re-asks too
    assert (new.usage["input_tokens"], new.usage["output_tokens"]) == (rep["prompt_tokens"], rep["completion_tokens"])
    assert new.usage["cost_usd"] == pytest.approx((rep["prompt_tokens"] * PRICE_IN
                                                   + rep["completion_tokens"] * PRICE_OUT) / 1e6)
    sent = len(chat_requests(fake_openai))

    # evaluate's own judge, in a fresh store, gives the same outcome
    if hasattr(evaluate, "run_judge"):  # until evaluate calls judge_absolute itself
        old_store = LocalStore(tmp_path / "old")
        old = evaluate.run_judge(cfg, old_store, 1, data, "round-1/evaluate")
        assert (new.verdicts, new.failures, new.usage, new.unsent) == old

    # (e) a rerun on the same journal asks again only what failed (t4's two repeats, each asked twice)
    fake_openai.log.clear()
    again = judge_absolute(cfg, store, cfg.service.judge, data, journal=journal, artifact_name="round-1/evaluate")
    assert again.verdicts == new.verdicts and len(chat_requests(fake_openai)) == 4 < sent
    assert again.usage["cached"] == 10


def test_absolute_judge_stops_at_the_budget_as_evaluate_does(tmp_path, fake_openai):
    fake_openai.set_responder(absolute_responder())
    cfg, data = make_config(tmp_path), rows()
    stores = [LocalStore(tmp_path / "new"), LocalStore(tmp_path / "old")]
    for store in stores:
        for name, cost in (("prepare", 9.995), ("round-1/evaluate", 0.25)):  # nearly all spent; one to replace
            with store.write(name) as folder:
                m = Manifest.start(name.split("/")[-1], name, "h", 1 if "/" in name else None)
                m.usage = {"requests": 1, "input_tokens": 0, "output_tokens": 0, "cost_usd": cost, "cached": 0}
                m.finish(folder).write(folder)

    new = judge_absolute(cfg, stores[0], cfg.service.judge, data, journal=stores[0].journal_dir / "j.jsonl",
                         artifact_name="round-1/evaluate")

    assert new.stopped and new.unsent == 12 and fake_openai.log == []
    assert new.usage["cost_usd"] == pytest.approx(0.25) and new.usage["carried_cost_usd"] == pytest.approx(0.25)
    if hasattr(evaluate, "run_judge"):
        assert (new.verdicts, new.failures, new.usage, new.unsent) == evaluate.run_judge(
            cfg, stores[1], 1, data, "round-1/evaluate")


# --------------------------------------------------------------------------- pairwise


def test_position_biased_judge_gives_ties_and_a_rerun_asks_nothing(tmp_path, fake_openai):
    fake_openai.set_responder(lambda body: {"reason": "The first answer reads better.", "winner": "A"})
    cfg, data = make_config(tmp_path), rows()
    store = LocalStore(tmp_path / "store")
    journal = store.journal_dir / "round-1-pairwise.jsonl"

    out = judge_pairwise(cfg, store, cfg.service.judge, data, journal=journal, artifact_name="round-1/pairwise")

    assert all(r["win"] == 0.5 for r in out.rows.values())
    assert win_rate_counts(out) == {"wins": 0, "ties": 6, "losses": 0, "n": 6, "win_rate": 0.5}
    t1 = out.rows["t1"]["pairwise"]
    assert [(v["order"], v["position"], v["winner"], v["repeat"]) for v in t1] == [
        ("student_first", "A", "student", 0), ("service_first", "A", "service", 1)]
    assert t1[0]["reason"] == "The first answer reads better."
    # each pair asked in both orders, the reply schema sent as a strict structured output
    sent = chat_requests(fake_openai)
    assert len(sent) == 12 and out.failures == [] and out.unsent == 0
    t2 = [first_user(r["body"]) for r in sent if row_key(r["body"]) == "t2"]
    assert sorted(section(u, "Answer A", "Answer B") for u in t2) == sorted([STUDENT["t2"], ROWS[1][2]])
    fmt = sent[0]["body"]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["required"] == ["reason", "winner"]
    assert out.usage["requests"] == 12 and out.usage["cost_usd"] > 0

    # (e) the rerun re-uses the journal: no new request, the same verdicts, nothing paid
    fake_openai.log.clear()
    again = judge_pairwise(cfg, store, cfg.service.judge, data, journal=journal, artifact_name="round-1/pairwise")
    assert fake_openai.log == [] and again.rows == out.rows
    assert again.usage["cached"] == 12 and again.usage["new_cost_usd"] == 0


def test_judge_that_prefers_the_student_gives_wins_and_failures_give_none(tmp_path, fake_openai):
    service_wins, ties, broken = {"t3"}, {"t5"}, {"t6"}

    def respond(body: dict):
        key, user = row_key(body), first_user(body)
        if key in broken:
            return {"reason": "both", "winner": "C"}  # outside the enum: re-asked, then recorded
        if key in ties:
            return {"reason": "equal", "winner": "tie"}
        student_is_a = section(user, "Answer A", "Answer B") == STUDENT[key]
        pick_student = key not in service_wins
        return {"reason": "picked", "winner": "A" if student_is_a == pick_student else "B"}

    fake_openai.set_responder(respond)
    cfg, data = make_config(tmp_path), rows()
    store = LocalStore(tmp_path / "store")

    out = judge_pairwise(cfg, store, cfg.service.judge, data, journal=store.journal_dir / "p.jsonl",
                         artifact_name="round-1/pairwise")

    # t1's two answers are the same text: the judge cannot tell them apart, so it is a tie
    assert {k: r["win"] for k, r in out.rows.items()} == {"t1": 0.5, "t2": 1.0, "t3": 0.0, "t4": 1.0, "t5": 0.5,
                                                         "t6": None}
    assert [v["winner"] for v in out.rows["t2"]["pairwise"]] == ["student", "student"]
    assert [v["position"] for v in out.rows["t2"]["pairwise"]] == ["A", "B"]
    assert out.rows["t6"]["pairwise"] == []
    assert sorted(f["order"] for f in out.failures) == ["service_first", "student_first"]
    assert all(f["id"] == "t6" and '"C"' in f["raw"] and f["attempts"] == 2 for f in out.failures)
    counts = win_rate_counts(out)
    assert counts == {"wins": 2, "ties": 2, "losses": 1, "n": 5, "win_rate": pytest.approx(3 / 5)}
    assert win_rate_counts(out.rows.values()) == counts == win_rate_counts([r["win"] for r in out.rows.values()])


# --------------------------------------------------------------------------- panel


@pytest.mark.parametrize("second", ["agrees", "shifted", "erratic"])
def test_panel_of_two_providers_measures_agreement(tmp_path, fake_openai, fake_gemini, second):
    score_of = {"agrees": lambda key: shifted(key, 2), "shifted": lambda key: shifted(key, -40), "erratic": erratic}
    fake_openai.set_responder(absolute_responder())
    fake_gemini.set_responder(absolute_responder(score_of=score_of[second]))
    cfg, data = make_config(tmp_path), rows()
    store = LocalStore(tmp_path / "store")
    judges = [judge("openai", "gpt-4o"), judge("gemini", "gemini-2.0-flash")]
    journal = store.journal_dir / "round-1-evaluate.jsonl"

    out = judge_panel(cfg, store, judges, data, journal=journal, artifact_name="round-1/evaluate")

    a, b = out.labels
    assert (a, b) == ("openai:gpt-4o", "gemini:gemini-2.0-flash")
    assert out.per_judge[a]["similarity"] == [92.0, 85.0, 20.0, None, 78.0, 5.0]
    gem = [None if k == "t4" else float(score_of[second](k)) for k in BASE]
    assert out.per_judge[b]["similarity"] == gem
    assert out.panel["similarity"][0] == pytest.approx((92 + gem[0]) / 2) and out.panel["similarity"][3] is None
    # every judge has its own journal, named after it; both services were asked
    assert {p.name for p in store.journal_dir.iterdir()} == {"round-1-evaluate.openai-gpt-4o.jsonl",
                                                           "round-1-evaluate.gemini-gemini-2.0-flash.jsonl"}
    assert len(chat_requests(fake_openai)) >= 12 and len(fake_gemini.log) >= 12
    assert {f["judge"] for f in out.failures} == {a, b} and all(f["id"] == "t4" for f in out.failures)
    assert out.usage["requests"] == out.outcomes[a].usage["requests"] + out.outcomes[b].usage["requests"]
    agree = out.agreement
    diffs = [abs(x - y) for x, y in zip(out.per_judge[a]["similarity"], gem) if x is not None]
    assert agree["mean_abs_diff"]["similarity"] == pytest.approx(sum(diffs) / len(diffs))
    alpha = agree["alpha"]
    if second == "agrees":
        assert agree["flagged"] == [] and agree["mean_abs_diff"]["similarity"] == pytest.approx(2.0)
        assert alpha["similarity"] > 0.95 and alpha["precision"] > 0.95
    else:  # two judges: each is as far from the other, so both are flagged
        assert agree["mean_abs_diff"]["similarity"] > DISAGREE_THRESHOLD and agree["flagged"] == [a, b]
        assert agree["deviation"][b]["similarity"] == pytest.approx(agree["mean_abs_diff"]["similarity"])
        # a judge 40 points off is far from agreement; one that also ranks the answers wrongly, below chance
        assert alpha["similarity"] < (0.7 if second == "shifted" else 0.0)
        assert alpha["precision"] < (0.7 if second == "shifted" else 0.0)

    # (e) a rerun asks again only t4's failed repeats, nothing else
    fake_openai.log.clear()
    fake_gemini.log.clear()
    again = judge_panel(cfg, store, judges, data, journal=journal, artifact_name="round-1/evaluate")
    assert again.per_judge == out.per_judge and again.agreement == out.agreement
    assert {row_key(r["body"]) for r in chat_requests(fake_openai) + fake_gemini.log} <= {"t4"}
    assert again.usage["cached"] == 20


def test_panel_shares_the_budget_and_carries_the_replaced_cost_once(tmp_path, fake_openai, fake_gemini):
    cfg, data = make_config(tmp_path), rows()
    store = LocalStore(tmp_path / "store")
    for name, cost in (("prepare", 9.995), ("round-1/evaluate", 0.25)):
        with store.write(name) as folder:
            m = Manifest.start(name.split("/")[-1], name, "h", 1 if "/" in name else None)
            m.usage = {"requests": 1, "input_tokens": 0, "output_tokens": 0, "cost_usd": cost, "cached": 0}
            m.finish(folder).write(folder)

    out = judge_panel(cfg, store, [judge("openai"), judge("gemini")], data, journal=store.journal_dir / "j.jsonl",
                      artifact_name="round-1/evaluate")

    assert out.stopped and out.unsent == 24 and fake_openai.log == [] and fake_gemini.log == []
    assert out.usage["cost_usd"] == pytest.approx(0.25) and out.usage["carried_cost_usd"] == pytest.approx(0.25)
    assert out.panel["similarity"] == [None] * 6 and out.agreement["flagged"] == []
    assert out.agreement["alpha"] == {"similarity": None, "precision": None}


def test_krippendorff_alpha_and_labels():
    n = None  # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": interval alpha 0.849
    data = [[1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n], [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
            [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n], [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n]]
    assert krippendorff_alpha_interval(data) == pytest.approx(0.849, abs=5e-4)
    assert krippendorff_alpha_interval([[10, 50, 90], [10, 50, 90]]) == 1.0
    assert krippendorff_alpha_interval([[50, 50], [50, 50]]) is None  # no variation: undefined
    assert krippendorff_alpha_interval([[1, n], [n, 2]]) is None  # no unit with two values
    assert judge_labels([judge("openai"), judge("openai"), judge("gemini")]) == [
        "openai:gpt-4o", "openai:gpt-4o#2", "gemini:gemini-2.0-flash"]
    assert judge_journal("/j/round-2-evaluate.jsonl", "openai:gpt-4o#2").name == "round-2-evaluate.openai-gpt-4o-2.jsonl"
    assert json.dumps(krippendorff_alpha_interval(data))  # a plain float, fit for metrics.json
