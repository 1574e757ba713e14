"""``duo canary`` on captured traffic in the contract format (issue 21, part 3): a student made bad on purpose is
rolled back, the service compared with itself is ramped, too few prompts hold with the count still needed; the next
gateway config is written, the report stored, the verdict commented on the promotion PR (fake GitHub) and the
config PR opened. The pairwise judge (fake OpenAI) with the position swap decides the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.artifacts.canary import latest, read_report
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.store import open_store
from tests.round_artifacts import put
from tests.traffic_capture import questions, write_capture

CONFIG = """\
task: {{name: bot, description: capitals}}
data: {{source: data.jsonl}}
student: {{model: tiny}}
service:
  synthesize: {{provider: openai, model: gpt-4o-mini}}
evaluate: {{metrics: [rougeL], bootstrap_samples: 2000}}
rollout: {{min_prompts: {min_prompts}, student_cost_per_hour_usd: 0.40, window_hours: 24}}
store: {{path: .duo/bot}}
"""
BAD = "I am not sure about that one, sorry."


def make_task(root: Path, min_prompts: int = 40, extra: str = "") -> Path:
    folder = root / "tasks" / "bot"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.jsonl").write_text('{"instruction": "q", "response": "a"}\n', encoding="utf-8")
    path = folder / "duo.yaml"
    path.write_text(CONFIG.format(min_prompts=min_prompts) + extra, encoding="utf-8")
    return path


def traffic_of(config: Path) -> Path:
    return config.parent / ".duo" / "bot" / "traffic"


def report_of(config: Path) -> dict:
    store = open_store(load_config(config))
    return read_report(store, latest(store))


def litellm_weight(config: Path) -> float:
    """The student's weight in the written LiteLLM config: the canary deployment's share of the served name."""
    doc = yaml.safe_load((config.parent / "deploy" / "litellm.yaml").read_text())
    served = [m for m in doc["model_list"] if m["model_name"] == "bot"]
    student = sum(m["litellm_params"].get("weight", 0) for m in served
                  if m["model_info"]["duo_deployment"] == "student")
    return student / sum(m["litellm_params"].get("weight", 0) for m in served)


def test_a_bad_student_is_rolled_back_with_its_evidence(tmp_path, capsys):
    config = make_task(tmp_path)
    write_capture(traffic_of(config), [(q, a, BAD) for q, a in questions(60)], student_served=12, student_errors=2)
    assert main(["canary", str(config)]) == 0
    r = report_of(config)
    v, ev, ops = r["verdict"], r["evidence"], r["ops"]
    assert (v["verdict"], v["weight"], v["next_weight"]) == ("rollback", 0.05, 0.0)
    assert "significantly behind the service" in v["reason"] and "rougeL" in v["reason"]
    assert ev["prompts"] == 48 and ev["diff"]["ci_high"] < 0 and ev["change"] == "worse"
    assert ops["split"] == {"requests": 60, "routed_to_student": 12, "served_by_student": 10, "student_share": 0.1667,
                            "routed_share": 0.2, "fallbacks": 2, "fallback_rate": 0.1667}
    assert ops["student"]["errors"] == 2 and ops["student"]["latency_p95_s"] < ops["service"]["latency_p50_s"]
    assert ops["costs"]["service_per_1k_usd"] > 0 and ops["costs"]["breakeven_requests_per_hour"] > 0
    assert litellm_weight(config) == 0.0  # the next gateway config: the service alone
    out = capsys.readouterr().out
    assert "`rollback`" in out and "| latency p50 / p95 (s) |" in out and "Break-even" in out
    stored = open_store(load_config(config)).local_path(latest(open_store(load_config(config))))
    assert {"canary.json", "canary.md", "prompts.jsonl", "manifest.json"} <= {p.name for p in stored.iterdir()}


def test_the_service_compared_with_itself_ramps_to_the_next_step(tmp_path):
    config = make_task(tmp_path)
    write_capture(traffic_of(config), [(q, a, a) for q, a in questions(50)])
    assert main(["canary", str(config)]) == 0
    v = report_of(config)["verdict"]
    assert (v["verdict"], v["weight"], v["next_weight"]) == ("ramp", 0.05, 0.25)
    assert litellm_weight(config) == pytest.approx(0.25)
    # the next canary starts from the weight the last verdict set
    assert main(["canary", str(config)]) == 0
    v = report_of(config)["verdict"]
    assert (v["weight"], v["next_weight"]) == (0.25, 1.0)


def test_too_few_prompts_hold_and_say_how_many_more(tmp_path, capsys):
    config = make_task(tmp_path, min_prompts=50)
    write_capture(traffic_of(config), [(q, a, a) for q, a in questions(12)])
    assert main(["canary", str(config), "--weight", "0.25"]) == 0
    v = report_of(config)["verdict"]
    assert (v["verdict"], v["next_weight"], v["more_prompts"]) == ("hold", 0.25, 38)
    assert "12 shadowed prompts so far; rollout.min_prompts is 50: about 38 more needed" in v["reason"]
    assert not (config.parent / "deploy").exists()  # a hold leaves the gateway config as it is


def test_the_window_leaves_out_older_calls(tmp_path):
    from datetime import UTC, datetime, timedelta

    config = make_task(tmp_path, min_prompts=10)
    old = datetime.now(UTC) - timedelta(hours=30)
    write_capture(traffic_of(config), [(q, a, BAD) for q, a in questions(30)], start=old, name="old.jsonl")
    write_capture(traffic_of(config), [(q, a, a) for q, a in questions(20)], name="new.jsonl")
    assert main(["canary", str(config), "--window-hours", "2"]) == 0
    r = report_of(config)
    assert r["verdict"]["verdict"] == "ramp" and r["evidence"]["prompts"] == 20 and r["window"]["hours"] == 2.0


@pytest.fixture
def promoted(tmp_path, monkeypatch, fake_github):
    """A task whose round 1 report PR (#1) was merged and recorded by duo promote."""
    from pipeline import github

    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "gh_output"))
    config = make_task(tmp_path)
    repo = github.connect()
    github.ensure_branch(repo, "duo/bot/round-1", "main")
    github.commit_files(repo, "duo/bot/round-1", {"reports/bot/round-1/report.md": b"# report\n"}, "report")
    pr, _ = github.upsert_pr(repo, branch="duo/bot/round-1", base="main", title="duo: bot round 1", body="report")
    fake_github.close_pull(pr.number, merged=True)
    put(open_store(load_config(config)), "promote", 1, {"promotion.json": {
        "round": 1, "status": "promoted", "ref": "production", "commit": None, "model_repo": None,
        "pr_url": pr.html_url, "date": "2026-12-01T00:00:00+00:00"}})
    return config


def test_the_verdict_is_commented_on_the_promotion_pr_and_the_config_pr_opened(promoted, fake_github, tmp_path):
    config = promoted
    write_capture(traffic_of(config), [(q, a, a) for q, a in questions(45)])
    assert main(["canary", str(config), "--comment", "--open-pr"]) == 0
    posted = [r for r in fake_github.requests("POST") if r["path"].endswith("/issues/1/comments")]
    assert len(posted) == 1 and "duo canary, bot: `ramp`" in posted[0]["body"]["body"]
    assert "<!-- duo-canary task=bot weight=0.05 -->" in posted[0]["body"]["body"]
    pr = next(p for p in fake_github.pulls if p["head"] == "duo/bot/rollout-25")
    assert pr["title"] == "duo canary: bot: ramp the student to 25%"
    changed = fake_github.files("duo/bot/rollout-25")
    assert "weight" in changed["tasks/bot/deploy/litellm.yaml"].decode()
    out = dict(line.split("=", 1) for line in (tmp_path / "gh_output").read_text().splitlines() if "=" in line)
    assert (out["verdict"], out["next-weight"]) == ("ramp", "0.25") and out["config-pr-url"].endswith("/pull/2")
    # a rerun at the same step edits its comment instead of posting another
    assert main(["canary", str(config), "--comment", "--weight", "0.05"]) == 0
    assert len([r for r in fake_github.requests("POST") if r["path"].endswith("/issues/1/comments")]) == 1
    assert fake_github.requests("PATCH", r"/issues/comments/")


def judge_prefers_paris_like(body: dict):
    """A judge that picks the answer naming a capital city (the service's), whichever position it is in."""
    text = body["messages"][-1]["content"]
    a, b = text.split("# Answer A", 1)[1].split("# Answer B", 1)
    a_good, b_good = "capital city of" in a, "capital city of" in b
    return {"reason": "names the capital", "winner": "tie" if a_good == b_good else ("A" if a_good else "B")}


@pytest.mark.parametrize("student,verdict,rate", [(BAD, "rollback", 0.0), (None, "ramp", 0.5)])
def test_the_pairwise_judge_with_the_position_swap_decides(tmp_path, fake_openai, student, verdict, rate):
    extra = ("  judge: {provider: openai, model: gpt-4o, base_url: " + fake_openai.url + "/v1, "
             "api_key_env: OPENAI_API_KEY, rpm: null, price_input_per_1m: 0,"
             " price_output_per_1m: 0}\n")
    config = make_task(tmp_path, min_prompts=30, extra="privacy: {scrub: false}\n")  # presidio takes ~30 s to import
    text = config.read_text().replace("evaluate: {metrics: [rougeL]", "evaluate: {metrics: [rougeL, win_rate]")
    config.write_text(text.replace("service:\n", "service:\n" + extra), encoding="utf-8")
    fake_openai.set_responder(judge_prefers_paris_like)
    write_capture(traffic_of(config), [(q, a, student or a) for q, a in questions(30)])
    assert main(["canary", str(config)]) == 0
    r = report_of(config)
    j = r["evidence"]["judge"]
    assert r["verdict"]["verdict"] == verdict and j["mean"] == rate and j["n"] == 30
    assert r["evidence"]["decision_metric"] == "win_rate"
    assert fake_openai.reported["requests"] == 60  # both orders of every shadowed prompt
    rows = [json.loads(x) for x in (Path(open_store(load_config(config)).local_path(latest(
        open_store(load_config(config))))) / "prompts.jsonl").read_text().splitlines()]
    assert {len(row["pairwise"]) for row in rows} == {2}


def test_unreadable_lines_are_reported_not_fatal(tmp_path):
    config = make_task(tmp_path, min_prompts=10)
    path = write_capture(traffic_of(config), [(q, a, a) for q, a in questions(12)])
    with path.open("a") as fh:
        fh.write('{"request": {"model": "bot", "messa')  # a line cut by a killed proxy
    assert main(["canary", str(config)]) == 0
    r = report_of(config)
    assert r["verdict"]["verdict"] == "ramp" and len(r["window"]["unreadable_lines"]) == 1


def test_a_capture_of_the_real_litellm_proxy(tmp_path):
    """tests/data/litellm_capture.jsonl: 40 requests through `duo rollout`'s config in the real LiteLLM proxy
    (10% canary, every service answer mirrored; SmolLM2-135M in llama-server the student, the fake OpenAI server,
    which echoes the question, the service), written by the capture hook. duo canary reads it as it is."""
    config = make_task(tmp_path, min_prompts=30)
    day = tmp_path / "real" / "2026-12-07"
    day.mkdir(parents=True)
    real = Path(__file__).parents[1] / "data" / "litellm_capture.jsonl"
    (day / "litellm-real.jsonl").write_bytes(real.read_bytes())
    assert main(["canary", str(config), "--traffic", str(tmp_path / "real"), "--window-hours", "1000000"]) == 0
    r = report_of(config)
    ops, ev = r["ops"], r["evidence"]
    assert ops["split"]["requests"] == 40 and ops["split"]["served_by_student"] == 4 and ev["prompts"] == 36
    assert ops["student"]["latency_p50_s"] > 0 and ops["service"]["error_rate"] == 0.0
    rouge = ev["metrics"]["rougeL"]
    assert 0.3 < rouge["ci_low"] <= rouge["mean"] <= rouge["ci_high"] < 1.0  # "The capital ... is Paris." vs the echo
    assert r["verdict"]["verdict"] == "ramp" and r["verdict"]["next_weight"] == 0.25
    # the same capture as the next round's data: the service's 36 answers, each with its system prompt
    text = config.read_text().replace("data: {source: data.jsonl}", f"data: {{source: {tmp_path / 'real'}}}")
    config.write_text(text, encoding="utf-8")
    assert main(["prepare", str(config)]) == 0
    m = open_store(load_config(config)).manifest("prepare")
    assert (m.counts["valid"], m.counts["with_system"], m.extra["format"]) == (36, 36, "traffic")
