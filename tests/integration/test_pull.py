"""``duo pull``: round 1's adapter out of the store, loaded on the tiny base, answering prompts."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.stages import finetune
from pipeline.store import LocalStore, open_store
from tests.model_fixtures import make_prepare, qa_rows


def write_config(tmp_path, model_dir, **sections):
    """A config file whose student is the tiny model and whose local store is ``tmp_path/store``."""
    doc = {"task": {"name": "tiny"}, "data": {"source": "unused.jsonl"}, "student": {"model": str(model_dir)},
           "infer": {"max_new_tokens": 8}, "store": {"path": "store"}}
    doc.update(sections)
    path = tmp_path / "duo.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def pulled(tmp_path_factory, tiny_model_dir):
    """A config file and a store whose round 1 holds a fine-tuned adapter (20 steps on "a plus b")."""
    base = tmp_path_factory.mktemp("pull")
    config = write_config(base, tiny_model_dir, finetune={"sft": {"max_steps": 20, "learning_rate": 1e-2,
                                                                  "warmup_steps": 0, "lr_scheduler_type": "constant",
                                                                  "per_device_train_batch_size": 4,
                                                                  "max_length": 128}})
    store = LocalStore(base / "store")
    make_prepare(store, qa_rows(32), qa_rows(4, seed=1, prefix="e"))
    finetune.run(load_config(config), store, 1)
    return base, config, store


def test_pull_loads_round_one_and_generates(pulled, capsys, tmp_path):
    _base, config, _store = pulled
    out_dir = tmp_path / "adapter-copy"
    assert main(["pull", str(config), "--round", "1", "--prompt", "What is 3 plus 4?", "--prompt", "What is 10 plus 2?",
                 "--output", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "adapter: round 1" in out
    blocks = out.split(">>> ")[1:]
    assert [b.splitlines()[0] for b in blocks] == ["What is 3 plus 4?", "What is 10 plus 2?"]
    # the fine-tuned tiny model has learnt the answer's shape ("The answer is ...")
    assert all("answer" in "\n".join(b.splitlines()[1:]).lower() for b in blocks), out
    copied = json.loads((out_dir / "adapter_config.json").read_text())
    assert copied["peft_type"] == "LORA"
    assert (out_dir / "adapter_model.safetensors").is_file()


def test_pull_defaults_to_the_latest_finetuned_round(pulled, capsys):
    _, config, _ = pulled
    assert main(["pull", str(config)]) == 0
    out = capsys.readouterr().out
    assert "round 1: the latest fine-tuned round (none promoted or evaluated)" in out and "adapter: round 1" in out


def test_pull_of_a_round_without_adapter_is_one_line(pulled, capsys, tmp_path):
    _, config, _ = pulled
    assert main(["pull", str(config), "--round", "7", "--prompt", "hi"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: round 7 has no finetune artifact") and len(err.splitlines()) == 1


def test_pull_from_an_empty_store_says_what_to_run(tmp_path, tiny_model_dir, capsys):
    config = write_config(tmp_path, tiny_model_dir)
    assert main(["pull", str(config), "--prompt", "hi"]) == 1
    assert "run `duo finetune` (or `duo run`) first" in capsys.readouterr().err


def publish_round_one(pulled, tmp_path, model_dir):
    """(config, hub store): a hub-store config whose round-1 adapter is the locally trained one."""
    config = write_config(tmp_path, model_dir, store={"kind": "hub", "namespace": "duo-org", "path": "hub-cache"})
    hub = open_store(load_config(config))
    hub.retry_delays = (0.0,)
    with hub.write("round-1/finetune") as folder:  # publish the locally trained round as the Hub store would
        shutil.copytree(pulled[2].open("round-1/finetune"), folder, dirs_exist_ok=True)
    return config, hub


def test_pull_from_the_hub_store_downloads_the_round_revision(pulled, fake_hub, tiny_model_dir, tmp_path, capsys):
    config, _ = publish_round_one(pulled, tmp_path, tiny_model_dir)
    shutil.rmtree(tmp_path / "hub-cache")  # a fresh machine: nothing local, everything from the Hub
    fake_hub.log.clear()

    assert main(["pull", str(config), "--prompt", "What is 3 plus 4?"]) == 0
    out = capsys.readouterr().out
    assert "adapter: round 1" in out and ">>> What is 3 plus 4?" in out
    paths = [r["path"] for r in fake_hub.log]
    assert "/api/models/duo-org/tiny-duo-adapter/revision/round-1" in paths, paths  # snapshot at revision round-1
    assert any(p.startswith("/duo-org/tiny-duo-adapter/resolve/") and p.endswith("/adapter_model.safetensors")
               for p in paths), paths


def test_pull_of_a_promoted_round_reads_the_promoted_commit(pulled, fake_hub, tiny_model_dir, tmp_path, capsys):
    """Issue 12: the round in production is pulled as it was promoted, even after its branch moved (a rerun)."""
    config, hub = publish_round_one(pulled, tmp_path, tiny_model_dir)
    local = pulled[2]
    assert main(["promote", str(config), "--merged", "--round", "1"]) == 0
    model = fake_hub.repo("duo-org/tiny-duo-adapter", "model")
    promoted = model.tags["production"]
    with hub.write("round-1/finetune") as folder:  # round 1 redone: branch round-1 moves on
        shutil.copytree(local.open("round-1/finetune"), folder, dirs_exist_ok=True)
        (folder / "README.md").write_text("a rerun\n")
    assert model.branches["round-1"] != promoted
    fake_hub.log.clear()
    capsys.readouterr()

    assert main(["pull", str(config), "--output", str(tmp_path / "copy")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"round 1: promoted to production (production at {promoted[:12]})"), out
    paths = [r["path"] for r in fake_hub.log]
    assert any(p.startswith(f"/duo-org/tiny-duo-adapter/resolve/{promoted}/") for p in paths), paths
    assert not any("/resolve/round-1/" in p for p in paths), paths  # not the moved branch
    assert json.loads((tmp_path / "copy" / "adapter_config.json").read_text())["peft_type"] == "LORA"
