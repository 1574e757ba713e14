"""``round-N/finetune``: the round's LoRA adapter (``adapter/``, ``README.md``,
``train_log.jsonl``): what it is trained on, and where a reader finds it."""

from __future__ import annotations

from pathlib import Path

from ..errors import DuoError
from ..store import Store, artifact_name
from .base import Artifact
from .feedback import feedback_artifacts


def training_artifacts(store: Store, round_no: int) -> list[str]:
    """Names of the artifacts round ``round_no`` trains on: ``prepare`` and each
    existing ``round-k/synthesize``, k <= ``round_no``. ArtifactMissing when
    ``prepare`` is not in the store."""
    if not store.exists("prepare"):
        raise store.missing("prepare", "the training set")
    synthetic = [artifact_name("synthesize", k) for k in range(1, int(round_no) + 1)]
    return ["prepare"] + [name for name in synthetic if store.exists(name)]


ARTIFACT = Artifact(
    "finetune",
    reads=("student", "finetune", "task.name", "task.description"),  # the task's words are in the model card
    # How many threads or processes train changes the speed, not what is trained.
    unhashed=("student.cpu_threads", "finetune.launch"),
    later=("finetune.seeds",),
    # people's labels of earlier rounds drop synthetic rows (data.reviewed)
    parents=lambda cfg, store, round_no: [*training_artifacts(store, round_no),
                                          *feedback_artifacts(store, round_no)],
)


def adapter_location(store: Store, name: str) -> tuple[str, str]:
    """(repo id or local folder, revision) a reader passes to ``from_pretrained`` for this adapter."""
    info = store.describe(name)
    if info.get("repo_type") == "model" and info.get("repo_id"):
        return str(info["repo_id"]), str(info.get("revision") or "")
    return str(store.local_path(name) / "adapter"), ""


def seed_adapters(store: Store, round_no: int) -> list[tuple[int | None, Path]]:
    """(training seed, adapter folder) of each adapter round ``round_no`` trained: one, ``(None,
    adapter/)``, unless it trained several ``finetune.seeds`` (its manifest's ``extra.seeds``)."""
    name = artifact_name("finetune", round_no)
    runs = (store.manifest(name).extra or {}).get("seeds") or []
    folder = store.open(name)
    if len(runs) < 2:
        return [(None, folder / "adapter")]
    return [(int(r["seed"]), folder / r["adapter"]) for r in runs]


def adapter_commit(store: Store, round_no: int) -> str | None:
    """The model-repo commit of round ``round_no``'s adapter (head of branch ``round-N``);
    None in a local store."""
    if store.kind != "hub":
        return None
    refs = store.hub.call(f"list refs of {store.model_repo}",
                          lambda: store.hub.api.list_repo_refs(store.model_repo, repo_type="model"))
    heads = {b.name: b.target_commit for b in refs.branches}
    if f"round-{round_no}" not in heads:
        raise DuoError(f"round {round_no} has no adapter branch round-{round_no} in {store.model_repo}; "
                       "nothing to promote")
    return heads[f"round-{round_no}"]


def adapter_folder(store: Store, round_no: int, commit: str | None = None) -> Path:
    """The local folder of round ``round_no``'s adapter (downloaded first from a hub store); with
    ``commit`` (a promoted round in the hub store) the adapter as it was at that model-repo commit,
    should the branch have moved."""
    name = artifact_name("finetune", round_no)
    if commit and store.kind == "hub" and adapter_commit(store, round_no) != commit:
        return store.hub.snapshot(store.model_repo, "model", commit, None,
                                  f"round {round_no}'s promoted adapter")
    if not store.exists(name):
        raise DuoError(f"round {round_no} has no finetune artifact ('{name}') "
                       f"in the {store.kind} store at {store.root}")
    folder = store.open(name) / "adapter"
    if not (folder / "adapter_config.json").is_file():
        raise DuoError(f"{folder}: no adapter_config.json; "
                       f"the finetune artifact of round {round_no} is incomplete")
    return folder


def cut_counts(counts: dict) -> tuple[int, int]:
    """(rows truncated, rows dropped) of a manifest's counts (first names in manifests
    made before the rename)."""
    return (int(counts.get("rows_truncated", counts.get("truncated")) or 0),
            int(counts.get("rows_dropped_too_long", counts.get("prompt_too_long")) or 0))


def cut_warning(counts: dict) -> str | None:
    """A one-line warning when finetune.sft.max_length cut more than 10% of the training rows."""
    given = counts.get("rows_given") or 0
    truncated, dropped = cut_counts(counts)
    if given and (truncated + dropped) / given > 0.1:
        return (f"warning: finetune.sft.max_length ({counts.get('max_length')} tokens) "
                f"cut {truncated + dropped} of {given} training rows "
                f"({truncated} answers truncated, {dropped} dropped: the prompt alone is too long); "
                "raise it or set it to auto")
    return None
