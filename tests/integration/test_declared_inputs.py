"""Each artifact's declared inputs (``pipeline.artifacts``) against what its stage really reads (issue #18).

Two rounds of ``duo run`` on the tiny student with a fake service LLM run while ``config_reads.recording`` notes
every config key each stage reads; a key a stage reads but its artifact does not declare fails the test. Then the
fingerprints derived from the declarations: turning ``privacy.scrub`` off redoes synthesize and evaluate (their
requests change), and a key no artifact depends on redoes nothing.
"""

from __future__ import annotations

import pytest
import yaml

from pipeline.artifacts import ARTIFACTS
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.config_reads import recording
from pipeline.store import LocalStore, round_of
from tests.conftest import isolate
from tests.integration.test_run import Service, write_config

pytestmark = pytest.mark.slow  # two full rounds on the tiny model: ~15 s on 2 idle cores


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, tiny_model_dir, fake_openai_session):
    """Two rounds with every optional path that reads more keys on: weakest-category seeds, the pairwise judge,
    scrubbing; then the report PR's merge recorded (promote). The keys read, by stage, and the config's path."""
    base = tmp_path_factory.mktemp("declared")
    fake = fake_openai_session
    fake.reset()
    fake.set_responder(Service(low_calls=10**6))  # every round fails the judge: two rounds
    config = write_config(base, tiny_model_dir, service_url=fake.url + "/v1",
                          synthesize={"targeting": "weakest"}, budget={"max_rounds": 2},
                          evaluate={"pairwise": True, "metrics": ["similarity", "precision", "rougeL", "win_rate"]},
                          privacy={"scrub": True})
    with pytest.MonkeyPatch.context() as mp:
        isolate(tmp_path_factory.mktemp("home"), mp)
        mp.setenv("OPENAI_API_KEY", fake.api_key)
        with recording() as reads:
            assert main(["run", str(config)]) == 0
            assert main(["promote", str(config), "--merged", "--round", "2"]) == 0
    fake.reset()
    return reads, config, LocalStore(base / "store")


def test_every_stage_reads_only_what_its_artifact_declares(recorded):
    reads, _, _ = recorded
    assert set(ARTIFACTS) <= set(reads), f"stages that never ran: {set(ARTIFACTS) - set(reads)}"
    undeclared = {stage: ARTIFACTS[stage].undeclared(keys) for stage, keys in reads.items() if stage in ARTIFACTS}
    assert undeclared == {stage: [] for stage in undeclared}
    # the recording itself sees the keys that matter (a recorder that notes nothing would pass the line above)
    assert {"synthesize.samples", "privacy.scrub", "service.synthesize.model"} <= reads["synthesize"]
    assert {"evaluate.pairwise", "service.judge.model"} <= reads["evaluate"]
    assert "finetune.sft" in reads["finetune"] and "student.model" in reads["infer"]


def test_a_declared_key_missing_from_a_declaration_is_caught(recorded):
    reads, _, _ = recorded
    narrowed = ARTIFACTS["synthesize"].__class__(stage="synthesize", reads=("task.description", "synthesize"))
    assert "privacy.scrub" in narrowed.undeclared(reads["synthesize"])


def _stale(config, overrides: list[str], store: LocalStore) -> set[str]:
    """The artifacts whose stored fingerprint no longer matches the config with ``overrides``."""
    cfg = load_config(config, overrides)
    stale = set()
    for name in store.list():
        stage, round_no = name.rsplit("/", 1)[-1], round_of(name)
        if stage not in ARTIFACTS or stage == "promote":  # promote's status is the review's, not the config's
            continue
        now = ARTIFACTS[stage].inputs(cfg, store, round_no, **_values(store, name))
        if now.fingerprint != store.manifest(name).fingerprint:
            stale.add(name)
    return stale


def _values(store: LocalStore, name: str) -> dict:
    """What else decided a stored artifact (recorded in its manifest), so only config changes show."""
    m = store.manifest(name)
    if m.stage == "synthesize":
        return {"target": m.counts["requested"]}  # the target after budget.max_synthetic_samples
    if m.stage == "prepare":
        return {"source_sha256": m.extra["source_sha256"]}
    if m.stage == "decide":
        import json

        return {"decision": json.loads((store.open(name) / "decision.json").read_text())}
    return {}


def test_scrubbing_switched_off_redoes_synthesize_and_evaluate_only(recorded):
    """Regression (#18): privacy.* was in no fingerprint, so an artifact made from unscrubbed requests was reused."""
    _, config, store = recorded
    assert _stale(config, [], store) == set()  # the derivation reproduces every stored fingerprint
    stale = _stale(config, ["privacy.scrub=false"], store)
    assert stale == {f"round-{k}/{s}" for k in (1, 2) for s in ("synthesize", "evaluate")} | {"round-0/evaluate"}


@pytest.mark.parametrize("override", ["journal.flush_s=5", "store.private=false", "service.synthesize.rpm=30",
                                      "finetune.launch.num_processes=2", "student.cpu_threads=1"])
def test_a_key_no_artifact_depends_on_redoes_nothing(recorded, override):
    _, config, store = recorded
    assert _stale(config, [override], store) == set()


def test_a_rerun_with_an_untouched_key_changed_skips_every_stage(recorded, fake_openai, capsys):
    _, config, _ = recorded
    text = yaml.safe_load(config.read_text())
    text["journal"] = {"flush_s": 7}
    config.write_text(yaml.safe_dump(text, sort_keys=False))
    capsys.readouterr()
    assert main(["run", str(config), "--rounds", "2"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if " done " in ln or " skipped " in ln]
    assert lines and all(" skipped " in ln for ln in lines), "\n".join(lines)
    assert not fake_openai.log  # nothing asked of the service again
