"""The report's *Adapter* section, gathered from the store: where a round's adapter is, and which
round's adapter to use after this round: the promoted round, else the best round so far, else the
latest fine-tuned round (:func:`pipeline.stats.best.adapter_round`, the default of ``duo pull`` and
``duo export``), beside this round's own.
"""

from __future__ import annotations

from ..artifacts.finetune import adapter_location
from ..config import Config
from ..errors import DuoError
from ..stats.best import adapter_round
from ..store import BASELINE_ROUND, Store, artifact_name
from .lineage import pinned


def adapter_info(cfg: Config, store: Store, round_no: int, pin: dict | None) -> dict | None:
    """Where the round's adapter is: ``repo`` and ``revision`` (its branch), and ``commit``/``url``
    pinned to the upload commit when the store has one (``pin``:
    :func:`pipeline.report.lineage.pinned`)."""
    name = artifact_name("finetune", round_no)
    if not store.exists(name):
        return None
    repo, revision = adapter_location(store, name)
    pin = pin or {}
    return {"repo": repo, "revision": revision, "base": cfg.student.model, "commit": pin.get("commit"),
            "url": pin.get("url"), "fingerprint": pin.get("fingerprint")}


def adapter_choice(cfg: Config, store: Store, round_no: int, own: dict | None) -> dict | None:
    """The adapter to use after round ``round_no``: ``round``, ``why``, ``adapter`` (see
    :func:`adapter_info`; ``own``, this round's, when it is this round) and ``this_round``; None for
    round 0 and when no round up to this one was fine-tuned."""
    if round_no == BASELINE_ROUND:
        return None
    try:
        chosen, _, why = adapter_round(cfg, store, round_no)
    except DuoError:  # no round up to this one has an adapter: the section says so
        return None
    info = own if chosen == round_no else adapter_info(cfg, store, chosen,
                                                      pinned(store, artifact_name("finetune", chosen)))
    return {"round": chosen, "why": why, "adapter": info, "this_round": chosen == round_no}
