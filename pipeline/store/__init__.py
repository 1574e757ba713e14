"""``open_store(cfg)``: the configured artifact store."""

from __future__ import annotations

from ..config import Config
from .base import BASELINE_ROUND, Store, artifact_name, latest_round, round_of
from .local import LocalStore

__all__ = ["BASELINE_ROUND", "LocalStore", "Store", "artifact_name", "latest_round", "open_store",
           "round_of"]


def open_store(cfg: Config) -> Store:
    root = cfg.resolve(cfg.store.path)
    if cfg.store.kind == "hub":
        from .hub import HubStore

        return HubStore(root, cfg)
    return LocalStore(root)
