"""The Hub store against the fake Hub, through the real huggingface_hub client."""

from __future__ import annotations

import os
from pathlib import Path

import huggingface_hub
import pytest
import yaml

from pipeline.config import build_config
from pipeline.errors import DuoError
from pipeline.manifest import Manifest
from pipeline.records import read_jsonl, write_jsonl
from pipeline.store import open_store, round_of
from pipeline.store.hub import HubStore

DATA_REPO, MODEL_REPO = "duo-org/demo-duo-data", "duo-org/demo-duo-adapter"


def make_cfg(root, **store):
    doc = {"task": {"name": "demo", "description": "a demo task"}, "data": {"source": "data.jsonl"},
           "student": {"model": "HuggingFaceTB/SmolLM2-135M-Instruct"},
           "store": {"kind": "hub", "namespace": "duo-org", "path": str(root), **store}}
    return build_config(doc, base_dir=root)


def hub_store(root) -> HubStore:
    store = open_store(make_cfg(root))
    store.retry_delays = (0.0, 0.0, 0.0)
    return store


def put_data(store, name: str, files: dict[str, list[dict]]) -> Manifest:
    with store.write(name) as tmp:
        for fname, rows in files.items():
            write_jsonl(tmp / fname, rows)
        m = Manifest.start(name.rsplit("/", 1)[-1], name, "hash0", round_of(name))
        m.counts = {fname.split(".")[0]: len(rows) for fname, rows in files.items()}
        m.finish(tmp).write(tmp)
    return m


def put_adapter(store, round_no: int, weights: bytes) -> None:
    name = f"round-{round_no}/finetune"
    with store.write(name) as tmp:
        (tmp / "adapter").mkdir()
        (tmp / "adapter" / "adapter_model.safetensors").write_bytes(weights)
        (tmp / "adapter" / "adapter_config.json").write_text('{"r": 8, "lora_alpha": 16}')
        (tmp / "adapter" / "README.md").write_text("peft's own card\n")
        (tmp / "README.md").write_text(f"---\nbase_model: tiny\nlibrary_name: peft\n---\n# round {round_no}\n")
        write_jsonl(tmp / "train_log.jsonl", [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0 / round_no}])
        Manifest.start("finetune", name, "hash0", round_no).finish(tmp).write(tmp)


def weights(seed: int, size: int = 300_000) -> bytes:
    return bytes((i * seed + i // 7) % 256 for i in range(size))  # has NUL bytes: binary, goes through LFS


def test_data_artifact_round_trip(fake_hub, tmp_path):
    store = hub_store(tmp_path / "a")
    train = [{"id": f"t{i}", "instruction": f"q{i}", "response": f"a{i}"} for i in range(5)]
    put_data(store, "prepare", {"train.jsonl": train, "test.jsonl": train[:2], "bad_rows.jsonl": []})
    put_data(store, "round-1/synthesize", {"data.jsonl": train[:3], "removed.jsonl": [], "failures.jsonl": []})
    assert len(fake_hub.commits()) == 2  # one commit per artifact
    repo = fake_hub.repo(DATA_REPO, "dataset")
    assert repo.private and "round-1" in repo.tags
    files = fake_hub.files(DATA_REPO, "dataset")
    assert {"prepare/train.jsonl", "prepare/manifest.json", "round-1/synthesize/manifest.json"} <= set(files)
    card = yaml.safe_load(files["README.md"].decode().split("---")[1])
    configs = {c["config_name"]: c for c in card["configs"]}
    assert configs["prepare"]["data_files"] == [{"split": "test", "path": "prepare/test.jsonl"},
                                                {"split": "train", "path": "prepare/train.jsonl"}]
    assert configs["round-1-synthesize"]["data_files"] == [{"split": "data", "path": "round-1/synthesize/data.jsonl"}]
    assert "| `round-1/synthesize` | synthesize |" in files["README.md"].decode()

    fresh = hub_store(tmp_path / "b")  # a new runner: nothing cached locally
    assert fresh.exists("prepare") and not fresh.exists("round-1/infer")
    assert fresh.list() == ["prepare", "round-1/synthesize"]
    assert fresh.list("round-") == ["round-1/synthesize"]
    assert list(read_jsonl(fresh.open("prepare") / "train.jsonl")) == train
    assert fresh.manifest("prepare").counts == {"train": 5, "test": 2, "bad_rows": 0}
    assert sorted(p.name for p in fresh.open("round-1/synthesize").iterdir()) == [
        "data.jsonl", "failures.jsonl", "manifest.json", "removed.jsonl"]
    d = fresh.describe("round-1/synthesize")
    assert d["repo_id"] == DATA_REPO and d["repo_type"] == "dataset" and d["revision"] == "main"
    assert d["location"] == d["url"] == f"{fake_hub.url}/datasets/{DATA_REPO}/tree/main/round-1/synthesize"


def test_adapter_round_trip_by_revision(fake_hub, tmp_path):
    store = hub_store(tmp_path / "a")
    put_adapter(store, 1, weights(3))
    put_adapter(store, 2, weights(5))
    assert fake_hub.requests("PUT", r"/lfs-upload/"), "the safetensors file should go through LFS"
    main = fake_hub.files(MODEL_REPO)
    assert main["adapter_model.safetensors"] == weights(5)
    assert main["README.md"].startswith(b"---\nbase_model: tiny")
    assert "duo/adapter/README.md" not in main and "adapter/README.md" not in main  # one card: README.md
    assert {"duo/manifest.json", "duo/train_log.jsonl", "adapter_config.json"} <= set(main)

    fresh = hub_store(tmp_path / "b")
    assert fresh.list("round-") == ["round-1/finetune", "round-2/finetune"]
    folder = fresh.open("round-1/finetune")
    assert (folder / "adapter" / "adapter_model.safetensors").read_bytes() == weights(3)
    assert (folder / "adapter" / "README.md").read_text() == (folder / "README.md").read_text()  # local layout
    assert fresh.manifest("round-1/finetune").round == 1
    assert list(read_jsonl(folder / "train_log.jsonl"))[-1]["loss"] == 1.0
    assert fresh.describe("round-2/finetune")["revision"] == "round-2"

    snap = huggingface_hub.snapshot_download(MODEL_REPO, revision="round-1", cache_dir=tmp_path / "hf")
    with open(os.path.join(snap, "adapter_model.safetensors"), "rb") as f:
        assert f.read() == weights(3)
    assert os.path.isfile(os.path.join(snap, "duo", "manifest.json"))


def test_rewritten_artifact_replaces_stale_local_copy_and_remote_files(fake_hub, tmp_path):
    writer = hub_store(tmp_path / "w")
    put_data(writer, "round-1/infer", {"answers.jsonl": [{"id": 1}], "extra.jsonl": [{"id": 9}]})
    reader_root = tmp_path / "r"
    assert list(read_jsonl(hub_store(reader_root).open("round-1/infer") / "answers.jsonl")) == [{"id": 1}]
    put_data(writer, "round-1/infer", {"answers.jsonl": [{"id": 2}]})
    assert "round-1/infer/extra.jsonl" not in fake_hub.files(DATA_REPO, "dataset")
    folder = hub_store(reader_root).open("round-1/infer")
    assert list(read_jsonl(folder / "answers.jsonl")) == [{"id": 2}]
    assert not (folder / "extra.jsonl").exists()


def test_local_copy_alone_does_not_count(fake_hub, tmp_path):
    store = hub_store(tmp_path)
    folder = tmp_path / "round-3" / "evaluate"
    folder.mkdir(parents=True)
    Manifest.start("evaluate", "round-3/evaluate", "h", 3).finish(folder).write(folder)
    assert not store.exists("round-3/evaluate")
    with pytest.raises(DuoError, match="round-3/evaluate"):
        store.open("round-3/evaluate")


def test_crashed_write_uploads_nothing(fake_hub, tmp_path):
    store = hub_store(tmp_path)
    with pytest.raises(RuntimeError), store.write("round-1/synthesize") as tmp:
        write_jsonl(tmp / "data.jsonl", [{"id": 1}])
        Manifest.start("synthesize", "round-1/synthesize", "h", 1).finish(tmp).write(tmp)
        raise RuntimeError("killed mid-stage")
    assert fake_hub.requests("POST", r"/commit/") == []
    assert not store.exists("round-1/synthesize")


def test_transient_errors_are_retried(fake_hub, tmp_path):
    store = hub_store(tmp_path)
    fake_hub.fail_next("POST", r"/api/repos/create", 503)
    fake_hub.fail_next("POST", r"/commit/main", 500, times=2)
    fake_hub.fail_next("POST", r"/tag/", 429)
    put_data(store, "round-1/evaluate", {"scores.jsonl": [{"id": 1}]})
    statuses = [e["status"] for e in fake_hub.requests("POST", r"/commit/main")]
    assert statuses == [500, 500, 200]
    assert "round-1" in fake_hub.repo(DATA_REPO, "dataset").tags
    assert hub_store(tmp_path / "other").exists("round-1/evaluate")


def test_persistent_errors_give_one_line_and_keep_the_local_artifact(fake_hub, tmp_path):
    store = hub_store(tmp_path)
    fake_hub.fail_next("POST", r"/commit/", 500, times=10)
    with pytest.raises(DuoError) as err:
        put_data(store, "prepare", {"train.jsonl": [{"id": 1}]})
    msg = str(err.value)
    assert "\n" not in msg and "prepare is complete locally" in msg and "500" in msg
    assert store.has_local("prepare") and not store.exists("prepare")


def test_missing_token_namespace_and_bad_token(fake_hub, tmp_path, monkeypatch):
    with pytest.raises(DuoError, match="store.namespace: required"):
        open_store(make_cfg(tmp_path, namespace=None))
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(DuoError, match="HF_TOKEN is not set"):
        open_store(make_cfg(tmp_path))
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    store = hub_store(tmp_path)
    with pytest.raises(DuoError, match="refused .*401.*HF_TOKEN"):
        put_data(store, "prepare", {"train.jsonl": [{"id": 1}]})


def test_dataset_card_configs_load_with_datasets(fake_hub, tmp_path):
    datasets = pytest.importorskip("datasets")
    store = hub_store(tmp_path / "a")
    rows = [{"id": f"t{i}", "instruction": f"q{i}", "response": f"a{i}"} for i in range(5)]
    put_data(store, "prepare", {"train.jsonl": rows, "test.jsonl": rows[:2]})
    put_data(store, "round-1/synthesize", {"data.jsonl": rows[:3], "removed.jsonl": []})
    round1 = fake_hub.repo(DATA_REPO, "dataset").branches["main"]
    assert fake_hub.repo(DATA_REPO, "dataset").tags["round-1"] == round1
    put_data(store, "round-2/synthesize", {"data.jsonl": rows[3:]})
    assert fake_hub.repo(DATA_REPO, "dataset").tags["round-1"] == round1  # a later round leaves the tag alone

    cache = str(tmp_path / "datasets")
    assert len(datasets.load_dataset(DATA_REPO, split="train", cache_dir=cache)) == 5  # prepare is the default
    synth = datasets.load_dataset(DATA_REPO, "round-2-synthesize", split="data", cache_dir=cache)
    assert synth["id"] == ["t3", "t4"]
    with pytest.raises(ValueError, match="round-2-synthesize"):
        datasets.load_dataset(DATA_REPO, "round-2-synthesize", revision="round-1", cache_dir=cache)


def test_fake_hub_speaks_the_client_protocol(fake_hub, tmp_path):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi(endpoint=fake_hub.url, token=os.environ["HF_TOKEN"])
    api.create_repo("o/m", private=True)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo("o/m")
    assert err.value.response.status_code == 409
    first = api.upload_file(path_or_fileobj=b"v1", path_in_repo="a.txt", repo_id="o/m").oid
    api.upload_file(path_or_fileobj=b"v2", path_in_repo="a.txt", repo_id="o/m")
    assert [c.title for c in api.list_repo_commits("o/m")][:2] == ["Upload a.txt with huggingface_hub"] * 2
    path = api.hf_hub_download("o/m", "a.txt", revision=first, cache_dir=tmp_path / "c")
    assert Path(path).read_text() == "v1"
    assert [p.path for p in api.get_paths_info("o/m", ["a.txt", "nope"])] == ["a.txt"]
    with pytest.raises(RevisionNotFoundError):
        api.repo_info("o/m", revision="round-9")
    with pytest.raises(RepositoryNotFoundError):  # private: unreadable without a token
        HfApi(endpoint=fake_hub.url, token=False).repo_info("o/m")


def test_invalid_model_card_metadata_is_a_one_line_error(fake_hub, tmp_path):
    store = hub_store(tmp_path)
    with pytest.raises(DuoError) as err, store.write("round-1/finetune") as tmp:
        (tmp / "adapter").mkdir()
        (tmp / "adapter" / "adapter_config.json").write_text("{}")
        (tmp / "README.md").write_text("---\nbase_model: [unclosed\n---\n")
        Manifest.start("finetune", "round-1/finetune", "h", 1).finish(tmp).write(tmp)
    assert "\n" not in str(err.value) and "Invalid metadata in README.md" in str(err.value)
    assert fake_hub.requests("POST", r"/commit/") == [] and store.has_local("round-1/finetune")


def test_dataset_card_from_a_fresh_runner_keeps_every_artifact(fake_hub, tmp_path):
    put_data(hub_store(tmp_path / "a"), "prepare", {"train.jsonl": [{"id": 1}, {"id": 2}]})
    put_data(hub_store(tmp_path / "b"), "round-1/synthesize", {"data.jsonl": [{"id": 3}]})
    card = fake_hub.files(DATA_REPO, "dataset")["README.md"].decode()
    assert "| `prepare` | prepare | train.jsonl | train 2 |" in card  # manifest downloaded by runner b
    assert "| `round-1/synthesize` | synthesize | data.jsonl | data 1 |" in card


def test_manifest_alone_downloads_no_adapter_weights(fake_hub, tmp_path):
    """Spend totals and reports read every round's manifest; a fresh runner must not pull every adapter for that."""
    put_adapter(hub_store(tmp_path / "a"), 1, weights(3))
    fake_hub.log.clear()
    fresh = hub_store(tmp_path / "b")
    assert fresh.manifest("round-1/finetune").round == 1
    fetched = [e["path"] for e in fake_hub.log if e["method"] == "GET" and "/resolve/" in e["path"]]
    assert fetched and all(p.endswith("duo/manifest.json") for p in fetched), fetched
    assert not (tmp_path / "b" / "round-1" / "finetune" / "adapter").exists()


# --------------------------------------------------------------------------- issue 12: pinned commits, model card

HEX40 = r"[0-9a-f]{40}"


def card_meta(text: str) -> tuple[dict, str]:
    """The YAML front matter (parsed) and the body of a card."""
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def test_each_upload_records_its_commit_and_a_fresh_runner_finds_it(fake_hub, tmp_path):
    store = hub_store(tmp_path / "a")
    put_data(store, "prepare", {"train.jsonl": [{"id": 1}]})
    prepare_sha = fake_hub.repo(DATA_REPO, "dataset").branches["main"]
    put_adapter(store, 1, weights(3))
    adapter_sha = fake_hub.repo(MODEL_REPO).branches["round-1"]
    put_data(store, "round-1/evaluate", {"scores.jsonl": [{"id": 1}]})
    assert fake_hub.repo(DATA_REPO, "dataset").branches["main"] != prepare_sha  # main moved on
    for s in (store, hub_store(tmp_path / "b")):  # the writer's record, and the Hub's history for a new runner
        d = s.describe("prepare")
        assert d["commit"] == prepare_sha and d["revision"] == "main"
        assert d["commit_url"] == f"{fake_hub.url}/datasets/{DATA_REPO}/tree/{prepare_sha}/prepare"
        a = s.describe("round-1/finetune")
        assert a["commit"] == adapter_sha and a["revision"] == "round-1"
        assert a["commit_url"] == f"{fake_hub.url}/{MODEL_REPO}/tree/{adapter_sha}"
    assert hub_store(tmp_path / "c").describe("round-2/infer")["commit"] is None


def test_model_card_has_license_datasets_lineage_and_one_readme(fake_hub, tmp_path):
    store = hub_store(tmp_path / "a")
    put_data(store, "prepare", {"train.jsonl": [{"id": 1}]})
    put_data(store, "round-1/synthesize", {"data.jsonl": [{"id": 2}]})
    synth_sha = store.describe("round-1/synthesize")["commit"]
    put_adapter(store, 1, weights(3))
    files = fake_hub.files(MODEL_REPO, rev="round-1")
    assert [p for p in files if p.endswith("README.md")] == ["README.md"]
    meta, body = card_meta(files["README.md"].decode())
    assert meta["base_model"] == "tiny" and meta["library_name"] == "peft"
    assert meta["license"] == "apache-2.0"  # SmolLM2's, the base model's licence
    assert meta["datasets"] == [DATA_REPO] and "model-index" not in meta
    assert f"at commit `{synth_sha}`" in body and f"datasets/{DATA_REPO}/tree/{synth_sha}" in body
    assert "Not evaluated yet" in body
    # the Hub client itself reads the card
    card = huggingface_hub.ModelCard(files["README.md"].decode())
    assert card.data.license == "apache-2.0" and card.data.datasets == [DATA_REPO]


def test_report_results_go_into_the_card_and_the_adapter_commit_stays(fake_hub, tmp_path):
    store = hub_store(tmp_path / "a")
    put_data(store, "prepare", {"train.jsonl": [{"id": 1}]})
    put_adapter(store, 1, weights(3))
    uploaded = fake_hub.repo(MODEL_REPO).branches["round-1"]
    results = {"round": 1, "confidence": "95%", "n": 50, "verdict": "pass", "rule_kind": "offline",
               "metrics": {"rougeL": {"mean": 0.265, "ci_low": 0.213, "ci_high": 0.323, "n": 50}},
               "report_url": "https://github.example/acme/duo/blob/" + "a" * 40 + "/reports/demo/round-1/report.md",
               "pr_url": "https://github.example/acme/duo/pull/7", "data_revision": "b" * 40,
               "data_url": f"{fake_hub.url}/datasets/{DATA_REPO}/tree/{'b' * 40}",
               "judge": {"models": ["openai:gpt-4o"], "repeats": 3, "prompt": "prompts/judge.j2",
                         "prompt_hash": "0123456789abcdef"}}
    sha = store.update_model_card(1, results)
    repo = fake_hub.repo(MODEL_REPO)
    assert sha and repo.branches["round-1"] == sha == repo.branches["main"]  # main was round 1: both moved
    files = fake_hub.files(MODEL_REPO, rev=sha)
    assert files["adapter_model.safetensors"] == weights(3)  # the adapter itself is unchanged
    meta, body = card_meta(files["README.md"].decode())
    assert meta["license"] == "apache-2.0" and meta["datasets"] == [DATA_REPO]
    [entry] = meta["model-index"][0]["results"]
    assert entry["dataset"] == {"type": DATA_REPO, "name": "demo test split (round 1)", "split": "test",
                                "revision": "b" * 40}
    assert entry["metrics"] == [{"type": "rougeL", "value": 0.265, "name": "rougeL mean (95% CI 0.213 to 0.323, n=50)"}]
    assert entry["source"]["url"] == results["report_url"]
    eval_results = huggingface_hub.ModelCard(files["README.md"].decode()).data.eval_results
    assert [(r.metric_type, r.metric_value, r.dataset_revision) for r in eval_results] == [("rougeL", 0.265, "b" * 40)]
    assert "sha256 `0123456789abcdef`" in body and "openai:gpt-4o, 3 repeat(s)" in body
    assert f"reviewed in [its pull request]({results['pr_url']})" in body and body.count("## Lineage") == 1
    # the artifact's commit is still the upload's: the card commit did not touch its manifest
    assert hub_store(tmp_path / "b").describe("round-1/finetune")["commit"] == uploaded
    assert store.update_model_card(1, results) is None  # nothing changed: no commit
    assert store.update_model_card(4, results) is None  # no such round


def test_card_of_an_earlier_round_leaves_main_alone(fake_hub, tmp_path, monkeypatch):
    store = hub_store(tmp_path / "a")
    put_adapter(store, 1, weights(3))
    put_adapter(store, 2, weights(5))
    main = fake_hub.repo(MODEL_REPO).branches["main"]
    results = {"round": 1, "confidence": "95%", "n": 4, "verdict": "fail", "rule_kind": "judge",
               "metrics": {"similarity": {"mean": 60.0, "ci_low": None, "ci_high": None, "n": 4}},
               "report_url": None, "pr_url": None, "data_revision": None, "data_url": "x", "judge": {"models": []}}
    sha = store.update_model_card(1, results)
    assert fake_hub.repo(MODEL_REPO).branches["main"] == main and fake_hub.repo(MODEL_REPO).branches["round-1"] == sha
    meta, _ = card_meta(fake_hub.files(MODEL_REPO, rev="round-1")["README.md"].decode())
    assert meta["model-index"][0]["results"][0]["metrics"][0]["name"] == "similarity mean (n=4)"


def test_student_license_overrides_the_base_models(fake_hub, tmp_path):
    doc = make_cfg(tmp_path).raw | {}
    cfg = build_config({**doc, "student": {"model": "acme/other-model", "license": "mit"}}, base_dir=tmp_path)
    store = open_store(cfg)
    store.retry_delays = (0.0,)
    put_adapter(store, 1, weights(3))
    meta, _ = card_meta(fake_hub.files(MODEL_REPO)["README.md"].decode())
    assert meta["license"] == "mit"
