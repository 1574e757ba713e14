"""What every verb shares: the one place a stage's summary reaches the terminal,
``$GITHUB_OUTPUT`` and the job summary, the ``--round`` default, and which round's adapter a verb that
serves or exports one takes (:func:`pick`)."""

from __future__ import annotations

from .. import gha
from ..artifacts.promote import production, promotions
from ..config import Config
from ..errors import DuoError
from ..flags import Flag
from ..stats.best import adapter_round
from ..store import Store, latest_round

# the captured traffic a verb reads (``duo canary``, ``duo monitor``) and its window
TRAFFIC_WINDOW = (
    Flag("--traffic", "Folder of captured traffic; unset: rollout.traffic, else traffic/ in the local store."),
    Flag("--window-hours", "Read the calls of this many last hours; unset: rollout.window_hours.", type=float,
         metavar="H"),
)


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


def pick(cfg: Config, store: Store, round_no: int | None, promoted: bool, base: bool = False
         ) -> tuple[int, str | None, str]:
    """(round, adapter commit or None, why) for ``--round N`` / ``--promoted`` / ``--base`` (round 0) / none
    (``duo export``, ``duo serve``): the promoted round, else the best evaluated round, else the latest
    fine-tuned round."""
    if base:
        return 0, None, "the base (--base)"
    if promoted:
        prod = production(promotions(store))
        if prod is None:
            raise DuoError("--promoted: no round is promoted "
                           f"in the {store.kind} store at {store.root} "
                           "(merge a round's report PR, or run `duo promote --merged --round N`)")
        return prod["round"], prod.get("commit"), "promoted to production"
    if round_no is not None:
        return int(round_no), None, "asked for with --round"
    return adapter_round(cfg, store)
