"""``duo validate``'s checks of the ``tracking:`` section: one line per problem, naming the key and the fix."""

from __future__ import annotations

import importlib.util
import os

from ..config import Config

INSTALL = "pip install 'duo[tracking]'"
LIBRARY = {"mlflow": "mlflow", "comet": "comet_ml"}


def problems(cfg: Config) -> list[str]:
    t = cfg.tracking
    if t.backend == "none":
        return []
    out = []
    if importlib.util.find_spec(LIBRARY[t.backend]) is None:
        out.append(f"tracking.backend: {t.backend}, but {LIBRARY[t.backend]} is not installed here; "
                   f"install it with: {INSTALL}")
    if t.backend == "comet":
        from .comet_run import API_KEY_ENV, NO_KEY

        if t.uri:
            out.append(f"tracking.uri: {t.uri!r} is an MLflow tracking URI, but tracking.backend is comet; "
                       "remove it (Comet is online with its API key, or offline with tracking.comet_offline_dir)")
        if not t.comet_offline_dir and not os.environ.get(API_KEY_ENV, "").strip():
            out.append(NO_KEY)
    elif t.comet_offline_dir or t.comet_workspace or t.comet_project:
        out.append("tracking.comet_*: set, but tracking.backend is mlflow; remove them or set backend: comet")
    return out
