"""What every verb shares: the one place a stage's summary reaches the terminal,
``$GITHUB_OUTPUT`` and the job summary, and the ``--round`` default."""

from __future__ import annotations

from .. import gha
from ..store import Store, latest_round


def publish(store: Store, artifact: str, line: str, title: str | None = None, **outputs) -> None:
    """Print a stage's one-line summary and hand it to Actions: ``artifact``, ``location`` and ``outputs`` as
    step outputs (names with ``_`` become kebab-case), ``line`` in the job summary under ``title``."""
    print(line)
    gha.set_output("artifact", artifact)
    gha.set_output("location", store.describe(artifact).get("location") or str(store.local_path(artifact)))
    for key, value in outputs.items():
        gha.set_output(key.replace("_", "-"), "" if value is None else value)
    gha.step_summary(f"### {title or artifact}\n\n{line}")


def round_arg(args, store: Store, stage: str | None = None) -> int:
    """``--round`` when given (0 is the untuned baseline), else the latest round with an artifact
    (of ``stage``, when given), else 1."""
    given = getattr(args, "round", None)
    if given is not None:
        return int(given)
    return latest_round(store, stage) or 1
