"""Experiment tracking (issue #22): each round as a run of a real MLflow tracking server, TRL's loss
curves in the same run, the embedded SQLite default, and Comet's offline archives.

One ``mlflow server`` (SQLite backend, proxied artifacts) is started per module on 127.0.0.1 and gets a
two-round ``duo run`` of the tiny student with the fake service LLM (round 1 continues, round 2 passes);
the runs are read back with ``MlflowClient``.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml

from pipeline import tracking
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.store import LocalStore
from pipeline.tracking import comet_run
from tests.conftest import isolate
from tests.integration.test_run import N_TEST, REPEATS, Service, write_config

pytestmark = pytest.mark.slow  # an MLflow server start beside two tiny rounds: ~60 s on 2 idle cores

METRICS = ["similarity", "precision", "rougeL", "bleu"]


def _free_port() -> int:
    # mlflow server takes no port 0 and cannot say which it got: ask the kernel for a free one first
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 with a SQLite backend, started at once and waited for in
    :meth:`wait` (its start-up, migrations included, takes tens of seconds: the fixture does other work
    meanwhile)."""

    def __init__(self, root: Path):
        self.root, port = root, _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = (root / "server.log").open("w")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
             f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "artifacts"),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=root)

    def wait(self, timeout: float = 150) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return self.url
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mlflow server did not start:\n" + (self.root / "server.log").read_text()[-2000:])
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def mlflow_server(tracked, server) -> str:
    return server.url


def _quiet(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        rc = main(argv)
    return rc, out.getvalue()


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, tiny_model_dir, fake_openai_session, server):
    """Two rounds of ``duo run`` tracked on the server, then ``duo decide --round 2`` again (a rerun
    logs into the same run). The config, the store, and the run's and the rerun's output. What no
    tracker sees (prepare, round 0, round 1's synthesis) runs while the server starts."""
    base = tmp_path_factory.mktemp("tracked")
    fake = fake_openai_session
    fake.reset()
    fake.set_responder(Service(low_calls=3 * N_TEST * REPEATS))  # round 1 judged LOW, round 2 HIGH
    config = write_config(base, tiny_model_dir, service_url=fake.url + "/v1",
                          tracking={"backend": "mlflow", "uri": server.url})
    with pytest.MonkeyPatch.context() as mp:
        isolate(tmp_path_factory.mktemp("home"), mp)
        mp.setenv("OPENAI_API_KEY", fake.api_key)
        for argv in (["prepare"], ["infer", "--round", "0"], ["evaluate", "--round", "0"], ["synthesize", "--round", "1"]):
            assert _quiet([argv[0], str(config), *argv[1:]])[0] == 0
        server.wait()
        rc, out = _quiet(["run", str(config)])
        assert rc == 0, out
        rc, again = _quiet(["decide", str(config), "--round", "2"])
        assert rc == 0, again
    fake.reset()
    return config, LocalStore(base / "store"), out, again


def _runs(uri: str, experiment: str) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment} at {uri}"
    runs = client.search_runs([exp.experiment_id])
    return {int(r.data.tags["duo.round"]): r for r in runs}


def test_each_round_is_one_run_with_params_metrics_tags_and_files(tracked, mlflow_server):
    from mlflow.tracking import MlflowClient

    _, store, _, _ = tracked
    runs = _runs(mlflow_server, "tiny-run")
    assert sorted(runs) == [1, 2]  # one run per round, the rerun of decide made none
    r1, r2 = runs[1].data, runs[2].data
    # params: the student, the judge, the recipe as trained, data counts, fingerprints
    assert r2.params["student"].endswith("tiny-model0") and r2.params["judge"] == "openai:gpt-4o"
    assert r2.params["sft.learning_rate"] == "0.001" and r2.params["sft.max_steps"] == "2"
    assert "lora.r" in r2.params
    tuned = store.manifest("round-2/finetune")
    assert r2.params["data.train_rows"] == str(tuned.counts["train_rows"])
    assert int(r2.params["data.synthetic_rows"]) > int(r1.params["data.synthetic_rows"]) > 0
    assert r2.params["fingerprint.finetune"] == tuned.fingerprint
    assert r2.params["fingerprint.decide"] == store.manifest("round-2/decide").fingerprint
    # metrics: each metric's mean and CI, the paired differences, cost, stage timings
    report = json.loads((store.open("round-2/report") / "metrics.json").read_text())
    for m in METRICS:
        assert r2.metrics[f"{m}.mean"] == pytest.approx(report["metrics"][m]["mean"])
        assert r2.metrics[f"{m}.ci_low"] <= r2.metrics[f"{m}.mean"] <= r2.metrics[f"{m}.ci_high"]
        for vs in ("vs_baseline", "vs_previous", "vs_service"):
            assert r2.metrics[f"{vs}.{m}.diff"] == pytest.approx(report[vs][m]["diff"])
    assert r1.metrics["similarity.mean"] < r2.metrics["similarity.mean"]  # the judge's LOW, then HIGH
    assert r2.metrics["cost.total_usd"] > r2.metrics["cost.round_usd"] > 0
    assert {f"seconds.{s}" for s in ("synthesize", "finetune", "infer", "evaluate", "report", "decide")} <= set(
        r2.metrics)
    # tags: the round, the decision, where the adapter is, the code's commit
    assert (r1.tags["duo.decision"], r2.tags["duo.decision"]) == ("continue", "pass")
    assert r2.tags["duo.verdict"] == "pass" and r2.tags["mlflow.runName"] == "tiny-run round 2"
    assert r2.tags["duo.adapter"].endswith("round-2/finetune/adapter")
    assert r2.tags.get("duo.git_sha") == tuned.git_sha  # None outside a git checkout
    # files: the report, its charts, metrics.json, the decision, the train log
    client = MlflowClient(tracking_uri=mlflow_server)
    run_id = runs[2].info.run_id
    names = {a.path for folder in ("report", "decide", "finetune") for a in client.list_artifacts(run_id, folder)}
    assert {"report/report.md", "report/metrics.json", "report/paired_differences.png",
            "decide/decision.json", "finetune/train_log.jsonl"} <= names
    local = client.download_artifacts(run_id, "report/metrics.json", str(store.root.parent))
    assert json.loads(Path(local).read_text())["verdict"] == "pass"
    assert runs[2].info.status == "FINISHED"


def test_trl_loss_history_lands_in_the_rounds_run(tracked, mlflow_server):
    from mlflow.tracking import MlflowClient

    _, store, _, _ = tracked
    runs = _runs(mlflow_server, "tiny-run")
    client = MlflowClient(tracking_uri=mlflow_server)
    for round_no, run in runs.items():
        history = client.get_metric_history(run.info.run_id, "loss")
        logged = [json.loads(line) for line in
                  (store.open(f"round-{round_no}/finetune") / "train_log.jsonl").read_text().splitlines()]
        losses = [row["loss"] for row in logged if "loss" in row]
        assert [h.value for h in history] == pytest.approx(losses) and len(history) == 2  # max_steps 2, each logged
        assert [h.step for h in history] == [1, 2]
        assert "train_runtime" in run.data.metrics  # the trainer's closing figures too


def test_rerun_updates_the_same_run_and_the_report_links_it(tracked, mlflow_server):
    from mlflow.tracking import MlflowClient

    _, store, out, again = tracked
    runs = _runs(mlflow_server, "tiny-run")
    run_id = runs[2].info.run_id
    url = f"{mlflow_server}/#/experiments/{runs[2].info.experiment_id}/runs/{run_id}"
    assert f"tracking: MLflow run {run_id} (experiment tiny-run): {url}" in out
    assert run_id in again  # duo decide names the same run
    # the rerun logged no second point of an unchanged metric
    history = MlflowClient(tracking_uri=mlflow_server).get_metric_history(run_id, "similarity.mean")
    assert len(history) == 1 and history[0].step == 2
    report = (store.open("round-2/report") / "report.md").read_text()
    assert f"Tracked in MLflow: [MLflow run {run_id} (experiment tiny-run)]({url})." in report


def test_embedded_default_is_sqlite_beside_the_store(tracked, tmp_path):
    config, store, _, _ = tracked
    cfg = load_config(config, ["tracking.uri=null", "tracking.experiment=tiny-embedded"])
    found = tracking.log_round(cfg, store, 1)
    db = store.root.parent / "mlflow.db"
    assert db.is_file() and found["url"] is None
    assert found["hint"] == f"mlflow ui --backend-store-uri sqlite:///{db.resolve()}"
    runs = _runs(f"sqlite:///{db.resolve()}", "tiny-embedded")
    assert list(runs) == [1] and runs[1].data.tags["duo.decision"] == "continue"
    assert runs[1].data.metrics["similarity.mean"] > 0
    # the files sit beside the store too, not in ./mlruns of the working folder
    assert any((store.root.parent / "mlflow-artifacts").rglob("report.md"))
    assert tracking.summary_line(found).endswith(f"see it with: {found['hint']}")


def test_comet_offline_writes_an_archive_of_the_round(tracked, tmp_path):
    config, store, _, _ = tracked
    cfg = load_config(config, ["tracking.backend=comet", f"tracking.comet_offline_dir={tmp_path / 'comet'}",
                               "tracking.comet_project=tiny-comet"])
    found = tracking.log_round(cfg, store, 2)
    assert found["url"] is None and found["backend"] == "Comet"
    archives = list((tmp_path / "comet").glob("*.zip"))
    assert len(archives) == 1 and found["run_id"] in archives[0].name
    with zipfile.ZipFile(archives[0]) as z:
        meta = json.loads(z.read("experiment.json"))
        messages = [json.loads(line) for line in z.read("messages.json").decode().splitlines() if line.strip()]
        members = set(z.namelist())
    assert meta["project_name"] == "tiny-comet" and meta["resume_strategy"] == "get_or_create"
    assert sorted(meta["tags"]) == ["pass", "round-2"]
    by_type: dict = {}
    for m in messages:
        by_type.setdefault(m["type"], []).append(m["payload"])
    metrics = {p["metric"]["metricName"]: p["metric"]["metricValue"] for p in by_type["metric_msg"]}
    report = json.loads((store.open("round-2/report") / "metrics.json").read_text())
    assert metrics["similarity.mean"] == report["metrics"]["similarity"]["mean"] == 95.0
    assert metrics["vs_baseline.similarity.diff"] == report["vs_baseline"]["similarity"]["diff"]
    assert metrics["cost.total_usd"] > 0
    params = {p["param"]["paramName"]: p["param"]["paramValue"] for p in by_type["parameter_msg"]}
    assert params["judge"] == "openai:gpt-4o" and params["sft.max_steps"] == 2
    others = {p["key"]: p["value"] for p in by_type["log_other"]}
    assert others["duo.decision"] == "pass" and others["duo.round"] == "2"
    files = {p["additional_params"]["fileName"]: p["file_path"] for p in by_type["file_upload"]}
    assert {"report/report.md", "report/metrics.json", "decide/decision.json", "finetune/train_log.jsonl"} <= set(files)
    assert set(files.values()) <= members  # each file is inside the archive


def test_comet_offline_gets_the_trainers_curves(tracked, tmp_path):
    """Round 2 fine-tuned again on a copy of the store with Comet offline: the trainer's loss lands in an
    archive of the round's experiment key (uploaded, it merges with the round's figures)."""
    config, store, _, _ = tracked
    shutil.copytree(store.root, tmp_path / "store")
    doc = yaml.safe_load(config.read_text())
    doc["data"]["source"] = str(config.parent / doc["data"]["source"])
    doc["store"]["path"] = str(tmp_path / "store")
    doc["tracking"] = {"backend": "comet", "comet_offline_dir": str(tmp_path / "comet")}
    copy = tmp_path / "duo.yaml"
    copy.write_text(yaml.safe_dump(doc))
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("COMET_API_KEY", raising=False)
        rc, out = _quiet(["finetune", str(copy), "--round", "2", "--force"])
    assert rc == 0, out
    key = comet_run.experiment_key(load_config(copy), 2)
    archives = list((tmp_path / "comet").glob("*.zip"))
    assert [a.name[:len(key)] for a in archives] == [key]
    with zipfile.ZipFile(archives[0]) as z:
        messages = [json.loads(line) for line in z.read("messages.json").decode().splitlines() if line.strip()]
    losses = [(m["payload"]["metric"]["step"], m["payload"]["metric"]["metricValue"]) for m in messages
              if m["type"] == "metric_msg" and m["payload"]["metric"]["metricName"] == "train/loss"]  # the callback's name
    logged = [json.loads(line) for line in
              (LocalStore(tmp_path / "store").open("round-2/finetune") / "train_log.jsonl").read_text().splitlines()]
    assert losses == [(row["step"], pytest.approx(row["loss"])) for row in logged if "loss" in row]
    assert len(losses) == 2


def test_validate_names_the_comet_api_key(tracked, capsys, monkeypatch):
    config, _, _, _ = tracked
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    assert main(["validate", str(config), "--set", "tracking.backend=comet", "--set", "tracking.uri=null"]) == 1
    err = capsys.readouterr().err
    assert "tracking.backend: comet online needs its API key in $COMET_API_KEY, which is not set" in err
    main(["validate", str(config)])  # backend mlflow at the server's URI: nothing to say about tracking
    assert "tracking" not in capsys.readouterr().err
