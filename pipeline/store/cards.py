"""Repo cards for the Hub store: the dataset card (README.md with ``configs`` metadata) and the model card's
metadata and lineage (license, datasets, model-index, data revision, judge prompt hash, report link).

The dataset card's YAML lists one config per artifact with one split per non-empty JSONL file, so
``datasets.load_dataset(repo, "round-1-synthesize", split="data")`` reads an artifact straight from the Hub.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ..config import Config
from ..templating import environment, render_file

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
        artifacts: one dict per data artifact in the repo after this commit: ``name``, ``files``
            (list of ``(path relative to the artifact, size in bytes)``) and ``manifest`` (its
            manifest dict, or None).
    """
    configs, rows = [], []
    for a in sorted(artifacts, key=lambda a: (a["name"] != "prepare", a["name"])):
        jsonl = sorted(rel for rel, size in a["files"]
                       if rel.endswith(".jsonl") and "/" not in rel and size > 0)
        if jsonl:
            conf = {"config_name": config_name(a["name"]),
                    "data_files": [{"split": split_name(rel), "path": f"{a['name']}/{rel}"}
                                   for rel in jsonl]}
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
        "dataset_card.md.j2",
        metadata_yaml=yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True),
        task=cfg.task.name,
        description=cfg.task.description,
        repo_id=repo_id,
        model_repo=model_repo,
        model_url=model_url,
        artifacts=rows,
        config_names=names,
        default_config=names[0] if names else "prepare",
    )


# -------------------------------------------------------- the model card (the adapter's README.md)

# Licences of base models duo knows; any other student needs ``student.license`` (else the card says
# ``other``).
BASE_LICENSES = (("HuggingFaceTB/SmolLM2-", "apache-2.0"), ("HuggingFaceTB/SmolLM-", "apache-2.0"))
FRONT_MATTER = re.compile(r"\A---\n(.*?\n)?---\n", re.DOTALL)
SECTION = re.compile(r"\n*<!-- duo:lineage -->.*?<!-- /duo:lineage -->\n*", re.DOTALL)


def model_license(cfg: Config) -> str:
    """``student.license``, else the known licence of the base model, else ``other``."""
    if getattr(cfg.student, "license", None):
        return cfg.student.license
    return next((lic for prefix, lic in BASE_LICENSES if cfg.student.model.startswith(prefix)), "other")


def split_card(text: str) -> tuple[dict, str]:
    """(front-matter dict, body) of a card; ({}, text) without front matter."""
    m = FRONT_MATTER.match(text)
    if not m:
        return {}, text
    meta = yaml.safe_load(m.group(1) or "") or {}
    return (meta if isinstance(meta, dict) else {}), text[m.end():]


def join_card(meta: dict, body: str) -> str:
    return f"---\n{yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)}---\n{body}"


def model_index(cfg: Config, model_repo: str, dataset_repo: str, results: dict) -> list[dict]:
    """The ``model-index`` entry of one round's evaluation:
    each metric's mean, its CI in the metric's name."""
    conf = results.get("confidence") or ""
    metrics = [
        {"type": m, "value": s["mean"], "name": f"{m} mean" + (
            f" ({conf} CI {s['ci_low']:.4g} to {s['ci_high']:.4g}, n={s.get('n')})"
            if s.get("ci_low") is not None else f" (n={s.get('n')})")}
        for m, s in results["metrics"].items() if s.get("mean") is not None
    ]
    dataset = {"type": dataset_repo, "name": f"{cfg.task.name} test split (round {results['round']})",
               "split": "test"}
    if results.get("data_revision"):
        dataset["revision"] = results["data_revision"]
    entry = {"task": {"type": "text-generation", "name": "Text Generation"}, "dataset": dataset,
             "metrics": metrics}
    if results.get("report_url"):
        entry["source"] = {"name": f"duo report, round {results['round']}", "url": results["report_url"]}
    return [{"name": model_repo, "results": [entry]}]


def finish_model_card(text: str, cfg: Config, *, model_repo: str, dataset_repo: str, lineage: dict,
                      results: dict | None = None) -> str:
    """The card ``text`` with duo's metadata (license, datasets, base_model, model-index once
    evaluated) and its lineage section (round, data revision; the evaluation, judge prompt and
    report once the report ran).

    Args:
        lineage: ``round``, ``data_revision`` and ``data_url``
            (the dataset repo commit the round trained on).
        results: the report's ``round``, ``confidence``, ``metrics`` {metric: {mean, ci_low,
            ci_high, n}}, ``verdict``, ``rule_kind``, ``report_url``, ``pr_url``, ``judge`` and
            ``data_revision``/``data_url`` of the evaluated data; None before the round is
            evaluated.
    """
    try:
        meta, body = split_card(text)
    except yaml.YAMLError:
        return text  # left as written: the Hub client refuses it with its own one-line error
    meta.setdefault("base_model", cfg.student.model)
    meta["license"] = model_license(cfg)
    meta["datasets"] = [dataset_repo]
    if results:
        meta["model-index"] = model_index(cfg, model_repo, dataset_repo, results)
    section = environment(trim=True).get_template("model_card_lineage.md.j2").render(
        lineage=lineage, results=results, dataset_repo=dataset_repo, license=meta["license"],
        license_set=bool(getattr(cfg.student, "license", None)))
    body = SECTION.sub("\n\n", body).rstrip("\n") + "\n\n" + section.strip("\n") + "\n"
    return join_card(meta, body)
