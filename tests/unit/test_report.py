"""report: on hand-built artifacts it renders the verdict first, the evidence against the untuned base (round 0),
tables, valid PNG charts and no secrets."""

import json
import struct
import zlib

import pytest

from pipeline.cli import main
from pipeline.stages import report
from pipeline.store import LocalStore, open_store
from tests.round_artifacts import CONFIG, build_baseline, build_prepare, build_round, make_config, put

SECRETS = {"GITHUB_TOKEN": "ghs_secretGitHubValue123", "OPENAI_API_KEY": "sk-secretOpenAIValue456",
           "HF_TOKEN": "hf_secretHubValue789"}


def check_png(path):
    """A real PNG: signature, IHDR first with a plausible size, every chunk's CRC right, IEND last."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path}: bad CRC in {kind}"
        kinds.append(kind)
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
            assert 100 < width < 4000 and 100 < height < 4000
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds


@pytest.fixture
def store_cfg(tmp_path, monkeypatch):
    for var, value in SECRETS.items():
        monkeypatch.setenv(var, value)
    cfg = make_config(tmp_path)
    store = open_store(cfg)
    build_prepare(store, train=90, test=4)
    return cfg, store


def test_report_renders_verdict_first_tables_and_charts(store_cfg):
    cfg, store = store_cfg
    build_baseline(store)
    build_round(store, 1, sim=60, prec=70, kept=1000, synth_cost=0.5, judge_cost=0.25, train_rows=1090)
    build_round(store, 2, sim=71.2, prec=80, kept=2000, synth_cost=1.0, judge_cost=0.5, train_rows=3090, cut=400)
    m = report.run(cfg, store, 2)
    folder = cfg.resolve("reports") / "demo" / "round-2"
    text = (folder / "report.md").read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0] == "# duo report: demo, round 2"
    assert lines[1] == "## ❌ FAIL"  # the verdict comes before anything else
    assert text.index("## ❌ FAIL") < text.index("## Scores by metric")
    assert "| ❌ | similarity mean >= 90 | 71.2 | 64.1 – 78.3 |" in text
    assert "| dolly | 2 |" in text and "| oasst | 2 |" in text
    # rounds table from the base on, x = training rows; decision, cost (this round 1.5; migration 0.75 + 1.5), data
    assert "| base | 0 | fail | 50 (45 – 55) | 60 (54 – 66) | 0.6 (0.54 – 0.66) |" in text
    assert "| r1 | 1090 | fail | 60 (54 – 66) | 70 (63 – 77) | 0.7 (0.63 – 0.77) |" in text
    assert "**Decision: `continue`**" in text and "round 3 with 4000 more synthetic samples" in text
    assert "This round: **$1.50**; whole migration so far: **$2.25**" in text
    assert "Coverage data: 90 train rows, 4 test rows" in text
    assert "| 2 | 2000 | 2000 | 1 | 0 | 1 | 3 | 2 |" in text  # removed by reason, in dedup.REASONS order
    # the rows the trainer really used, and what max_length cut (400 of 3490 > 10%: a warning)
    assert "Round 2 trained on 3090 rows (2000 synthetic): of the 3490 rows given, `finetune.sft.max_length` " \
           "(256 tokens) cut 400 answers short" in text
    assert "More than 10% of the training rows were cut" in text
    adapter = store.local_path("round-2/finetune") / "adapter"
    assert f'model = PeftModel.from_pretrained(base, "{adapter}")' in text
    # worst samples: lowest similarity first, service vs student side by side, judge reasons, escaped HTML
    assert text.index("`t3`: similarity 40") < text.index("`t2`: similarity 80") < text.index("`t4`")
    assert "<th>Service LLM</th><th>Student</th>" in text
    assert "Student answer t3 &lt;b&gt;" in text and "reason-sim-t3" in text
    assert "explain | pipes<br>and lines" in text
    for name in ("score_distribution.png", "category_means.png", "round_trend.png"):
        check_png(folder / name)
        assert f"({name})" in text
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["verdict"] == "fail" and metrics["metrics"]["similarity"]["mean"] == 71.2
    assert metrics["decision"]["decision"] == "continue" and metrics["cost"]["total_usd"] == pytest.approx(2.25)
    assert [r["kept"] for r in metrics["data"]["rounds"]] == [1000, 2000]
    # the same files are the store artifact round-2/report
    art = store.open("round-2/report")
    assert sorted(p.name for p in art.iterdir()) == sorted([p.name for p in folder.iterdir()] + ["manifest.json"])
    assert m.extra["report_md"] == str(folder / "report.md")


def test_scores_show_the_baseline_and_paired_differences_in_words(store_cfg):
    # Issue "Evidence": every score table carries the untuned base and the paired difference with its CI.
    cfg, store = store_cfg
    build_baseline(store)
    build_round(store, 1, sim=60, prec=70)
    build_round(store, 2, sim=71.2, prec=80)
    report.run(cfg, store, 2)
    text = (cfg.resolve("reports") / "demo" / "round-2" / "report.md").read_text()
    assert "| metric | untuned base (round 0) | this round | vs base | vs round 1 | pass rate | threshold | n |" in text
    # base 50 (45-55); this round 71.2; vs base +21.2 +-7.12; vs round 1 +11.2 +-7.12 (tests/round_artifacts.py)
    assert ("| similarity | 50 (45 – 55) | 71.2 (64.1 – 78.3) | +21.2 (+14.1 to +28.3), better | "
            "+11.2 (+4.08 to +18.3), better | 40% | 90 | 4 |") in text
    assert "| embedding | 0.6 (0.54 – 0.66) | 0.7 (0.63 – 0.77) | +0.1 (+0.03 to +0.17), better | " \
           "0 (-0.07 to +0.07), no detectable change |" in text
    assert "| dolly | 2 | 64.1 (31.5) |" in text  # per category, the base's mean in brackets
    assert ("**Against the service:** similarity 71.2 against the service's logged answers (the untuned base 50). "
            "No ceiling was measured") in text
    # the decision names its evidence on the decision metric, once
    decision = json.loads((cfg.resolve("reports") / "demo" / "round-2" / "metrics.json").read_text())["decision"]
    evidence = decision["evidence"]["text"]
    assert f"Evidence on similarity: {evidence}." in text and text.count(evidence) == 1


def test_round_one_compares_with_the_base_only(store_cfg):
    cfg, store = store_cfg
    build_baseline(store)
    build_round(store, 1, sim=60, prec=70)
    report.run(cfg, store, 1)
    text = (cfg.resolve("reports") / "demo" / "round-1" / "report.md").read_text()
    assert "| metric | untuned base (round 0) | this round | vs base | pass rate | threshold | n |" in text
    assert "| similarity | 50 (45 – 55) | 60 (54 – 66) | +10 (+4 to +16), better | 40% | 90 | 4 |" in text
    assert "vs round" not in text.split("## Scores by metric")[1].split("## Test-set size")[0]
    assert "| base | 0 | fail |" in text and "| r1 | 100 | fail |" in text


def test_power_section_and_its_warning(store_cfg):
    cfg, store = store_cfg
    build_baseline(store)
    power = {"n": 4, "ci_half_width": 7.12, "prompts_to_halve": 16, "paired_sd": 6.0, "diff_half_width": 5.9,
             "detectable_difference": 8.4, "can_decide": False, "detect_difference": 5.0,
             "prompts_for_difference": 12}
    build_round(store, 1, extra={"power": power})
    report.run(cfg, store, 1)
    text = (cfg.resolve("reports") / "demo" / "round-1" / "report.md").read_text()
    section = text.split("## Test-set size")[1].split("##")[0]
    assert ("On similarity (the decision metric) over 4 test prompts the 95% CI of the mean is ± 7.12; "
            "halving it takes about 16 prompts.") in section
    assert "A paired difference of 8.4 or more between two rounds is detectable with 80% power" in section
    assert ("Detecting a difference of 5 (`evaluate.detect_difference`) needs about 12 prompts "
            "(8 more than this test set).") in section
    assert "the test set is too small to decide between pass and fail" in section.lower()
    # a test set that decides says nothing of the kind
    build_round(store, 2, extra={"power": {**power, "can_decide": True}})
    report.run(cfg, store, 2)
    assert "too small to decide" not in (cfg.resolve("reports") / "demo" / "round-2" / "report.md").read_text()


def test_judge_panel_shows_each_judge_the_agreement_and_who_disagrees(store_cfg):
    cfg, store = store_cfg
    panel = {"judges": ["openai:gpt-4o", "gemini:gemini-2.5-flash"],
             "per_judge": {"openai:gpt-4o": {"similarity": 71.0, "precision": 80.0},
                           "gemini:gemini-2.5-flash": {"similarity": 31.0, "precision": 40.0}},
             "agreement": {"alpha": {"similarity": 0.12, "precision": 0.2},
                           "mean_abs_diff": {"similarity": 40.0, "precision": 40.0},
                           "flagged": ["gemini:gemini-2.5-flash"], "threshold": 15.0}}
    build_round(store, 1, extra={"panel": panel})
    report.run(cfg, store, 1)
    section = (cfg.resolve("reports") / "demo" / "round-1" / "report.md").read_text().split("## Judge panel")[1]
    section = section.split("\n## ")[0]
    assert "2 judges scored every answer" in section
    assert "| `openai:gpt-4o` | 71 | 80 |" in section
    assert "| `gemini:gemini-2.5-flash` ⚠️ disagrees | 31 | 40 |" in section
    assert "| α | 0.12 | 0.2 |" in section and "| mean abs. difference | 40 | 40 |" in section
    assert "more than 15 points from the other judges" in section


def test_round_zero_renders_without_comparisons(store_cfg, capsys):
    cfg, store = store_cfg
    build_baseline(store)
    assert main(["report", str(cfg.source_path), "--round", "0"]) == 0
    assert "report round 0: FAIL" in capsys.readouterr().out
    folder = cfg.resolve("reports") / "demo" / "round-0"
    text = (folder / "report.md").read_text()
    assert text.startswith("# duo report: demo, round 0 (the untuned base student)")
    assert "| similarity | 50 | 45 – 55 | 40% | 90 | 4 |" in text
    assert "vs base" not in text and "untuned base (round 0)" not in text and "Evidence on" not in text
    assert "This is the first evaluated round." in text
    assert "Round 0 is the base student before fine-tuning: it trained on no rows." in text
    assert "Round 0 has no adapter: it is the base student `HuggingFaceTB/SmolLM2-135M-Instruct` itself." in text
    check_png(folder / "score_distribution.png")
    assert not (folder / "round_trend.png").exists()


def test_offline_metric_without_a_ceiling_says_what_it_cannot_tell(store_cfg):
    cfg, store = store_cfg
    build_baseline(store, judge=False)
    build_round(store, 1, judge=False)
    report.run(cfg, store, 1)
    text = (cfg.resolve("reports") / "demo" / "round-1" / "report.md").read_text()
    assert ("**Against the service:** embedding 0.85 against the service's logged answers (the untuned base 0.6). "
            "No ceiling was measured") in text
    assert "by definition" not in text and "## Parity with the service" not in text


def test_worst_samples_follow_the_decision_metric_and_data_line_breaks_are_breaks(store_cfg):
    from pipeline.report.data import worst_samples

    ev = {"metrics": {"similarity": {}, "rougeL": {}}, "judge": "llm", "decision_metric": "rougeL"}
    rows = [{"id": "a", "scores": {"similarity": 10, "rougeL": 0.9}},
            {"id": "b", "scores": {"similarity": 90, "rougeL": 0.1}}]
    metric, worst = worst_samples(ev, rows, 1)
    assert metric == "rougeL" and [w["id"] for w in worst] == ["b"]  # not the lowest similarity
    assert report._html("Email:<br>Thanks<BR />Bye <b>x</b>") == "Email:<br>Thanks<br>Bye &lt;b&gt;x&lt;/b&gt;"


def test_the_cost_table_lists_only_stages_that_asked_a_service(store_cfg):
    cfg, store = store_cfg
    build_baseline(store, judge=False)
    build_round(store, 1, judge=False, synth_cost=0.0)
    report.run(cfg, store, 1)
    text = (cfg.resolve("reports") / "demo" / "round-1" / "report.md").read_text()
    section = text.split("## Cost")[1].split("## Data")[0]
    assert "round-1/finetune" not in section and "round-1/infer" not in section


def test_stop_decisions_have_their_own_words(tmp_path):
    cfg = make_config(tmp_path, ["budget.patience=1"])
    store = open_store(cfg)
    build_prepare(store)
    build_baseline(store)
    build_round(store, 1, sim=60, prec=70)
    build_round(store, 2, sim=60, prec=70)  # no gain over round 1: a plateau with patience 1
    report.run(cfg, store, 2)
    text = (cfg.resolve("reports") / "demo" / "round-2" / "report.md").read_text()
    assert "**Decision: `stop-plateau`**" in text and "more data stopped helping" in text
    assert "Evidence on similarity:" in text and "no detectable change" in text

    no_service = CONFIG.replace("  synthesize: {provider: openai, model: gpt-4o-mini}\n", "")
    cfg = make_config(tmp_path / "other", text=no_service)
    store = open_store(cfg)
    build_baseline(store)
    build_round(store, 1, synthesize=False)
    report.run(cfg, store, 1)
    text = (cfg.resolve("reports") / "demo" / "round-1" / "report.md").read_text()
    assert "**Decision: `stop-no-service`**" in text
    assert "configure a service LLM to synthesize more data" in text


def test_missing_pieces_are_stated_not_crashed(store_cfg):
    cfg, store = store_cfg
    build_round(store, 1, judge=False, synthesize=False, finetune=False)
    report.run(cfg, store, 1)
    text = (cfg.resolve("reports") / "demo" / "round-1" / "report.md").read_text()
    assert text.splitlines()[2] == "## ✅ PASS"
    assert "No LLM judge ran this round" in text
    assert "No synthesis ran in round 1" in text
    assert "No adapter: this round has no finetune artifact." in text
    assert "The 4 lowest by embedding (no judge ran)." in text
    assert text.index("`t2`: embedding 0.3") < text.index("`t3`: embedding 0.6")
    assert "This is the first evaluated round." in text


def test_no_secrets_in_any_written_file(store_cfg):
    cfg, store = store_cfg
    build_round(store, 1)
    # a secret that leaked into the data must still not reach the report
    scores = store.open("round-1/evaluate") / "scores.jsonl"
    scores.write_text(scores.read_text().replace("Service answer t3", f"key {SECRETS['OPENAI_API_KEY']}"))
    report.run(cfg, store, 1)
    written = list((cfg.resolve("reports")).rglob("*")) + list(store.local_path("round-1/report").rglob("*"))
    assert len([p for p in written if p.is_file()]) >= 8
    for path in written:
        if path.is_file():
            data = path.read_bytes()
            for value in SECRETS.values():
                assert value.encode() not in data, f"{value} leaked into {path}"
    assert "key ***" in (cfg.resolve("reports") / "demo" / "round-1" / "report.md").read_text()


def test_rerun_skips_and_force_rewrites(store_cfg):
    cfg, store = store_cfg
    build_round(store, 1)
    m1 = report.run(cfg, store, 1)
    before = (cfg.resolve("reports") / "demo" / "round-1" / "score_distribution.png").read_bytes()
    assert report.run(cfg, store, 1).timings["finished"] == m1.timings["finished"]
    m3 = report.run(cfg, store, 1, force=True)
    assert m3.timings != m1.timings
    # same inputs draw the same bytes, so a rerun's PR gets no spurious changes
    assert (cfg.resolve("reports") / "demo" / "round-1" / "score_distribution.png").read_bytes() == before


def test_cli_outputs_and_missing_evaluation(store_cfg, tmp_path, monkeypatch, capsys):
    cfg, store = store_cfg
    assert main(["report", str(cfg.source_path), "--round", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "round-1/evaluate" in err[0]
    build_round(store, 1)
    out = tmp_path / "out.txt"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    assert main(["report", str(cfg.source_path)]) == 0
    assert ("report round 1: FAIL, decision continue: FAIL: similarity mean = 71.2 (needs >= 90); "
            "FAIL: precision mean = 80 (needs >= 90)") in capsys.readouterr().out
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert outputs["report-dir"] == str(cfg.resolve("reports") / "demo" / "round-1")
    assert outputs["pr-url"] == "" and outputs["artifact"] == "round-1/report"
    assert "FAIL" in (tmp_path / "summary.md").read_text()


class HubLikeStore(LocalStore):
    """A local store that describes its adapters the way the hub store does (repo id + round revision)."""

    def describe(self, name):
        if name.endswith("/finetune"):
            return {"location": "https://hf.example/acme/demo-duo-adapter/tree/round-1", "repo_id":
                    "acme/demo-duo-adapter", "repo_type": "model", "revision": "round-1"}
        return super().describe(name)


def test_adapter_snippet_names_hub_repo_and_revision(tmp_path):
    cfg = make_config(tmp_path)
    store = HubLikeStore(cfg.resolve(cfg.store.path))
    build_prepare(store)
    build_round(store, 1)
    report.run(cfg, store, 1)
    text = (cfg.resolve("reports") / "demo" / "round-1" / "report.md").read_text()
    assert "Hub repo `acme/demo-duo-adapter`, revision `round-1`" in text
    assert 'PeftModel.from_pretrained(base, "acme/demo-duo-adapter", revision="round-1")' in text


def test_sparse_evaluation_still_renders(tmp_path):
    # an evaluate artifact that carries only the verdict (and a broken earlier round) must not crash the report
    from tests.round_artifacts import put

    cfg = make_config(tmp_path)
    store = open_store(cfg)
    put(store, "evaluate", 1, {"metrics.json": "{broken"})
    put(store, "evaluate", 2, {"metrics.json": {"round": 2, "verdict": "fail", "metrics": {"bleu": {"mean": 12.5}}},
                               "scores.jsonl": [{"id": "a", "scores": {}}]})
    report.run(cfg, store, 2)
    text = (cfg.resolve("reports") / "demo" / "round-2" / "report.md").read_text()
    assert "## ❌ FAIL" in text and "| bleu | 12.5 | – | – | – | – |" in text
    assert "No scored samples." in text and "No `prepare` artifact" in text


# --------------------------------------------------------------------------- issue 12: a report a reviewer can trust


def report_text(cfg, round_no: int) -> str:
    return (cfg.resolve("reports") / "demo" / f"round-{round_no}" / "report.md").read_text()


def test_threshold_and_pass_rule_are_told_apart_once(store_cfg):
    cfg, store = store_cfg
    build_round(store, 1)
    report.run(cfg, store, 1)
    text = report_text(cfg, 1)
    note = ("*Threshold* is a bar for one answer and *pass rate* the share of answers at or above it; neither "
            "decides the round: the pass rule's conditions above do.")
    assert text.count(note) == 1
    # a rule that counts answers above the threshold says so instead
    rule = [{"metric": "similarity", "stat": "pass_rate", "vs": None, "min": 0.8, "above": None, "value": 0.4,
             "ok": False}]
    build_round(store, 2, extra={"rule": rule})
    report.run(cfg, store, 2)
    assert "the pass rule uses it only through its pass-rate condition on similarity." in report_text(cfg, 2)


def test_decision_is_stated_once_without_the_rule_rows(store_cfg):
    cfg, store = store_cfg
    build_baseline(store)
    build_round(store, 1, sim=60, prec=70)
    report.run(cfg, store, 1)
    section = report_text(cfg, 1).split("## Decision")[1].split("## Cost")[0]
    assert "**Decision: `continue`**: round 1 fails; the budget allows round 2 with 2000 more synthetic samples." \
        in section
    assert "needs >= 90" not in section  # the rule's rows are in the verdict table, not again here
    assert section.count("round 2") == 1  # no second "Next: round 2 ..." sentence


def test_pr_title_says_the_verdict_and_what_comes_next_once():
    ctx = {"task": "demo", "round": 1, "headline": "pass", "ev": {"verdict": "pass"},
           "decision": {"decision": "pass", "next_round": None}}
    assert report.title(ctx) == "duo: demo round 1: PASS"  # not "PASS (pass)"
    ctx.update(headline="fail", ev={"verdict": "fail"}, decision={"decision": "continue", "next_round": 2})
    assert report.title(ctx) == "duo: demo round 1: FAIL, next: round 2"
    ctx["decision"] = {"decision": "stop-no-service", "next_round": None}
    assert report.title(ctx) == "duo: demo round 1: FAIL, stop: no service"


RELATIVE = """
task: {name: demo}
data: {source: data.jsonl, columns: {instruction: instruction, response: output, category: dataset}}
student: {model: HuggingFaceTB/SmolLM2-135M-Instruct}
evaluate:
  offline_pass_rule:
    - {metric: embedding, vs: baseline, stat: ci_low, above: 0}
    - {metric: embedding, stat: mean, min: 0.5}
"""


def test_round_zero_leaves_out_relative_rows_and_says_why(tmp_path):
    from tests.round_artifacts import put, score_rows

    cfg = make_config(tmp_path, text=RELATIVE)
    store = open_store(cfg)
    rule = [{"metric": "embedding", "stat": "ci_low", "vs": "baseline", "min": None, "above": 0.0, "value": None,
             "ok": False, "why": "no untuned baseline (round 0) to compare 'embedding' with"},
            {"metric": "embedding", "stat": "mean", "vs": None, "min": 0.5, "above": None, "value": 0.6, "ok": True}]
    doc = {"round": 0, "n": 4, "judge": "skipped", "rule": rule, "rule_kind": "offline", "verdict": "fail",
           "metrics": {"embedding": {"mean": 0.6, "ci_low": 0.5, "ci_high": 0.7, "n": 4, "threshold": 0.8}}}
    put(store, "evaluate", 0, {"metrics.json": doc, "scores.jsonl": score_rows(0, judge=False)})
    m = report.run(cfg, store, 0)
    assert report.summary(m, store, 0).startswith("report round 0: baseline round (relative rules apply from "
                                                  "round 1), decision stop-no-service: ok: embedding mean = 0.6")
    text = report_text(cfg, 0)
    assert "## Baseline round" in text and "FAIL" not in text.split("## Scores by metric")[0]
    assert "Baseline round: relative rules apply from round 1" in text
    assert "| ✅ | embedding mean >= 0.5 | 0.6 |" in text
    assert "vs baseline" not in text and "no untuned baseline" not in text
    assert "round 0 is the baseline" in text.split("## Decision")[1]


def test_judge_prompt_hash_repeats_and_answer_counts_are_shown(store_cfg):
    from pipeline.artifacts import file_digest
    from pipeline.prompts import find_template
    from tests.round_artifacts import put

    cfg, store = store_cfg
    answers = [{"id": "t1", "answer": "fine", "finish_reason": "stop"},
               {"id": "t2", "answer": "", "finish_reason": "stop"},
               {"id": "t3", "answer": "cut sh", "finish_reason": "length"}, {"id": "t4", "answer": "ok"}]
    put(store, "infer", 1, {"answers.jsonl": answers}, counts={"answers": 4, "empty_answers": 1},
        extra={"params": {"max_new_tokens": 64}})
    build_round(store, 1)
    scores = store.open("round-1/evaluate") / "scores.jsonl"
    scores.write_text(scores.read_text().replace('"Student answer t3 <b>"', '""'))
    report.run(cfg, store, 1)
    text = report_text(cfg, 1)
    digest = file_digest(find_template(cfg, "judge.j2"))
    assert f"**Judge:** gpt-4o, 1 repeat(s) per answer, prompt `prompts/judge.j2` (sha256 `{digest}`)." in text
    assert "**Student answers:** 4, of which 1 empty and 1 cut at `infer.max_new_tokens` (64)." in text
    assert "<i>(empty answer)</i>" in text.split("`t3`")[1]  # a blank student cell is named, not blank


def test_answers_without_finish_reasons_say_the_truncation_is_unknown(store_cfg):
    from tests.round_artifacts import put

    cfg, store = store_cfg
    put(store, "infer", 1, {"answers.jsonl": [{"id": "t1", "answer": "a"}, {"id": "t2", "answer": " "}]})
    build_round(store, 1)
    report.run(cfg, store, 1)
    assert ("**Student answers:** 2, of which 1 empty and an unknown number cut at `infer.max_new_tokens`"
            in report_text(cfg, 1))


def test_local_store_lineage_names_folders_and_fingerprints(store_cfg):
    cfg, store = store_cfg
    build_round(store, 1)
    report.run(cfg, store, 1)
    text = report_text(cfg, 1)
    section = text.split("## Lineage")[1].split("## Worst samples")[0]
    evaluate = store.local_path("round-1/evaluate")
    assert "Local store: each artifact is named by its folder and its manifest fingerprint." in section
    assert f"| `round-1/evaluate` | `{evaluate}` |" in section
    assert "/tree/" not in section  # no Hub links without a Hub


def test_data_section_shows_seed_mix_length_band_semantic_drops_and_scrubbed_counts(store_cfg):
    cfg, store = store_cfg
    build_round(store, 1)
    removed = {"empty": 0, "truncated": 0, "duplicate": 1, "near_duplicate": 0, "test_overlap": 0,
               "semantic_contaminated": 4, "length_outlier": 7}
    put(store, "synthesize", 2, {"data.jsonl": [], "removed.jsonl": [], "failures.jsonl": []},
        counts={"requested": 20, "kept": 8, "removed": removed, "seed_mix": {"oasst": 3, "dolly": 9}},
        extra={"seeds": {"targeting": "weakest"}, "scrubbed": {"EMAIL": 2, "PHONE": 0, "KEY": 1}})
    put(store, "finetune", 2, {"adapter/adapter_config.json": {"r": 8}},
        counts={"train_rows": 97, "rows_given": 100, "synthetic_rows": 8, "rows_truncated": 5,
                "rows_dropped_too_long": 3, "max_length": 344},
        extra={"lengths": {"max_length": 344, "max_length_rule": "auto: p99 of 100 rows"}})
    build_round(store, 2, synthesize=False, finetune=False, extra={})
    report.run(cfg, store, 2)
    text = report_text(cfg, 2)
    header = next(line for line in text.splitlines() if line.startswith("| round | synthetic rows kept"))
    row = next(line for line in text.splitlines() if line.startswith("| 2 | 8 | 20 |"))
    cells = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in row.split("|")]))
    assert cells["semantic_contaminated"] == "4" and cells["length_outlier"] == "7"
    assert ("Round 2 drew its seeds towards the categories the student scored lowest in "
            "(`synthesize.targeting: weakest`): dolly 9, oasst 3.") in text
    assert "synthesize: 2 EMAIL, 1 KEY" in text and "PHONE" not in text.split("Personal data scrubbed")[1][:200]
    assert "(344 tokens, auto: p99 of 100 rows) cut 5 answers short and left 3 rows" in text
