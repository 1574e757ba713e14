"""Repo cards for the Hub store: the dataset card (README.md with ``configs`` metadata) and a fallback model card.

The dataset card's YAML lists one config per artifact with one split per non-empty JSONL file, so
``datasets.load_dataset(repo, "round-1-synthesize", split="data")`` reads an artifact straight from the Hub.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ..config import Config
from ..templating import render_file

LICENSE = "other"  # the data comes from a service LLM whose terms vary; the owner sets the real one


def config_name(artifact: str) -> str:
    """``round-1/synthesize`` -> ``round-1-synthesize`` (a dataset config name)."""
    return artifact.replace("/", "-")


def split_name(filename: str) -> str:
    """``judge_failures.jsonl`` -> ``judge_failures``; anything but word characters becomes ``_``."""
    return re.sub(r"\W", "_", Path(filename).stem) or "data"


def _counts(manifest: dict | None) -> str:
    counts = (manifest or {}).get("counts") or {}
    return ", ".join(f"{k} {v}" for k, v in counts.items() if isinstance(v, (int, float))) or "-"


def dataset_card(cfg: Config, repo_id: str, model_repo: str, model_url: str, artifacts: list[dict]) -> str:
    """Render the dataset repo's README.md.

    Args:
        artifacts: one dict per data artifact in the repo after this commit: ``name``, ``files`` (list of
            ``(path relative to the artifact, size in bytes)``) and ``manifest`` (its manifest dict, or None).
    """
    configs, rows = [], []
    for a in sorted(artifacts, key=lambda a: (a["name"] != "prepare", a["name"])):
        jsonl = sorted(rel for rel, size in a["files"] if rel.endswith(".jsonl") and "/" not in rel and size > 0)
        if jsonl:
            conf = {"config_name": config_name(a["name"]),
                    "data_files": [{"split": split_name(rel), "path": f"{a['name']}/{rel}"} for rel in jsonl]}
            if a["name"] == "prepare":
                conf["default"] = True
            configs.append(conf)
        manifest = a.get("manifest") or {}
        rows.append({"name": a["name"], "stage": manifest.get("stage", a["name"].rsplit("/", 1)[-1]),
                     "files": sorted(rel for rel, _ in a["files"]), "counts": _counts(manifest),
                     "finished": (manifest.get("timings") or {}).get("finished") or "-"})
    metadata = {"license": LICENSE, "task_categories": ["text-generation"], "language": ["en"],
                "tags": ["duo", "llamaduo", "synthetic", "llm-as-a-judge"],
                "pretty_name": f"{cfg.task.name} duo data"}
    if configs:
        metadata["configs"] = configs
    names = [c["config_name"] for c in configs]
    return render_file(
        "dataset_card.md.j2", metadata_yaml=yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True),
        task=cfg.task.name, description=cfg.task.description, repo_id=repo_id, model_repo=model_repo,
        model_url=model_url, artifacts=rows, config_names=names, default_config=names[0] if names else "prepare",
    )
