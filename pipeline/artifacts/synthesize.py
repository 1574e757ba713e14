"""``round-N/synthesize``: the service LLM's new training pairs (``data.jsonl``, ``removed.jsonl``,
``failures.jsonl``), and what later stages read of them."""

from __future__ import annotations

from ..config import Config
from ..store import Store, artifact_name
from .base import SPEND_CAP, Artifact, service_run_keys
from .canary import latest as latest_canary
from .evaluate import previous_round
from .feedback import feedback_artifacts


def earlier_rounds(store: Store, round_no: int) -> list[str]:
    """The synthesize artifacts of rounds 1 .. ``round_no`` - 1 that exist."""
    return [artifact_name("synthesize", k)
            for k in range(1, round_no)
            if store.exists(artifact_name("synthesize", k))]


def scores_round(cfg: Config, store: Store, round_no: int) -> int | None:
    """The evaluated round whose scores choose the seeds (``synthesize.targeting: weakest``), else None."""
    return previous_round(store, round_no) if cfg.synthesize.targeting == "weakest" else None


def _parents(cfg: Config, store: Store, round_no: int) -> list[str]:
    scored = scores_round(cfg, store, round_no)
    scores = [artifact_name("evaluate", scored)] if scored is not None else []
    # synthesize.targeting canary_losses: the latest canary's losses are seeds
    canary = [n for n in [latest_canary(store)] if n and cfg.synthesize.targeting == "canary_losses"]
    # people's labels of earlier rounds steer the seeds (data.seeds_feedback)
    return ["prepare", *earlier_rounds(store, round_no)] + scores + feedback_artifacts(store, round_no) \
        + canary


STRUCTURED_PROMPT = "synthesize_structured.j2"  # the synthesis prompt of a json, label or tool_call task


def reply_schema_name(kind: str) -> str:
    """The reply schema of a structured task's synthesis."""
    return f"synthesized_{kind}_pairs.schema.json"


def _structured_files(cfg: Config) -> tuple:
    """A structured task's prompt and reply schemas (each kind's under task.kind auto) and ``task.schema``."""
    from ..prompts import find_schema, find_template

    if cfg.task.kind == "text":
        return ()
    kinds = ("json", "label", "tool_call") if cfg.task.kind == "auto" else (cfg.task.kind,)
    return (find_template(cfg, STRUCTURED_PROMPT), *(find_schema(cfg, reply_schema_name(k)) for k in kinds),
            *((cfg.resolve(cfg.task.schema),) if cfg.task.schema else ()))


def _files(cfg: Config) -> tuple:
    from ..prompts import find_schema, find_template

    own = cfg.data.hygiene.refusal_patterns  # an own refusal list decides which pairs are dropped
    return (find_template(cfg, cfg.synthesize.prompt), find_schema(cfg, cfg.synthesize.schema),
            *((cfg.resolve(own),) if own else ()), *_structured_files(cfg))


ARTIFACT = Artifact(
    "synthesize",
    # task.kind, labels and schema: a structured task's pairs are asked for and checked as its kind
    reads=("task.description", "task.kind", "task.labels", "task.schema", "synthesize", "service.synthesize",
           "privacy"),
    # budget.max_synthetic_samples decides the round's target, which is in the fingerprint as a value;
    # synthesize.min_yield only decides what follows (decide).
    unhashed=(*service_run_keys("synthesize"), *SPEND_CAP, "budget.max_synthetic_samples",
              "synthesize.min_yield"),
    later=("data.hygiene",),  # which pairs are dropped as refusals or cut
    files=_files,
    parents=_parents,
)


def kept(store: Store, round_no: int) -> int | None:
    """Synthetic rows round ``round_no`` kept (its manifest's ``kept``), or None when it
    has no such artifact."""
    name = artifact_name("synthesize", round_no)
    return int((store.manifest(name).counts or {}).get("kept") or 0) if store.exists(name) else None


def synthetic_by_round(store: Store, round_no: int) -> dict[int, int]:
    """Synthetic rows kept in each round k <= ``round_no`` that has a synthesize artifact."""
    return {k: n for k in range(1, int(round_no) + 1) if (n := kept(store, k)) is not None}


def refused_all(store: Store, round_no: int) -> bool:
    """True when round ``round_no``'s synthesis sent nothing because the spend cap refused every
    request (a budget smaller than one request)."""
    name = artifact_name("synthesize", round_no)
    if not store.exists(name):
        return False
    m = store.manifest(name)
    return (m.extra or {}).get("stopped") == "budget" and not (m.counts or {}).get("requests")


def no_new_rows(store: Store, round_no: int) -> bool:
    """True when round ``round_no`` has a synthesize artifact that kept 0 rows and so adds nothing
    to train: from round 2 on, and in round 1 when the spend cap refused every request (a round 1
    that was answered and kept nothing still trains on the coverage data)."""
    return kept(store, round_no) == 0 and (round_no >= 2 or refused_all(store, round_no))
