"""Experiment tracking (``tracking:``): each round as a run of MLflow or Comet, through their own libraries.

- ``log_round`` (called by ``duo decide`` once the round's figures are final) logs the round's params,
  metrics, tags and files (``figures.round_record``) into the round's run, found again by its tags
  (MLflow) or its fixed key (Comet): a rerun updates the same run.
- ``training`` (around the fine-tuning) sets the variables transformers' MLflow and Comet callbacks read
  and yields the ``report_to`` value for TRL, so the loss curves land in the same run.
- ``link`` is what the report and the PR show: the run's URL where the tracker has one.

``tracking.backend: none`` (the default) does nothing and imports nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..config import Config
from ..store import Store

REPORT_TO = {"mlflow": "mlflow", "comet": "comet_ml"}  # transformers' names of the integrations


def enabled(cfg: Config) -> bool:
    return cfg.tracking.backend != "none"


def link(cfg: Config, round_no: int) -> dict | None:
    """The round's run for the report and the PR (created when absent): ``backend``, ``run_id``,
    ``url`` (None: the tracker has no web address), ``where`` (one line), ``hint`` (how to see it)."""
    if not enabled(cfg) or round_no < 1:
        return None
    if cfg.tracking.backend == "comet":
        from . import comet_run

        return {"backend": "Comet", "hint": None, **comet_run.link(cfg, round_no)}
    from . import mlflow_run

    return _mlflow_link(cfg, mlflow_run.ensure_run(cfg, round_no))


def _mlflow_link(cfg: Config, run: dict) -> dict:
    from . import mlflow_run

    where = f"MLflow run {run['run_id']} (experiment {mlflow_run.experiment_name(cfg)})"
    hint = None if run["url"] else mlflow_run.ui_command(cfg)
    return {"backend": "MLflow", "run_id": run["run_id"], "url": run["url"], "where": where, "hint": hint}


def log_round(cfg: Config, store: Store, round_no: int) -> dict | None:
    """Log round ``round_no`` into its run (DuoError, one line, when the tracker refuses: the round's
    artifacts are kept and a rerun logs it); :func:`link`'s dict, or None when tracking is off."""
    if not enabled(cfg) or round_no < 1:
        return None
    from .figures import round_record

    record = round_record(cfg, store, round_no)
    if cfg.tracking.backend == "comet":
        from . import comet_run

        return {"backend": "Comet", "hint": None, **comet_run.log(cfg, round_no, record)}
    from . import mlflow_run

    logged = mlflow_run.log(cfg, round_no, record)  # its run: link's, without looking it up again
    return {**_mlflow_link(cfg, logged), "changed": logged["changed"]}


def summary_line(found: dict | None) -> str | None:
    """One line for the CLI: where the round's run is and how to see it."""
    if not found:
        return None
    return f"tracking: {found['where']}" + (f": {found['url']}" if found.get("url") else "") + (
        f"; see it with: {found['hint']}" if found.get("hint") else "")


@contextmanager
def training(cfg: Config, round_no: int, *, main: bool = True) -> Iterator[str | None]:
    """Inside: the environment transformers' tracker callbacks read points at the round's run; yields
    TRL's ``report_to`` (None when tracking is off, and on the processes other than the main one)."""
    if not enabled(cfg) or not main:
        yield None
        return
    if cfg.tracking.backend == "comet":
        from . import comet_run

        env = comet_run.training_env(cfg, round_no)
    else:
        from . import mlflow_run

        env = mlflow_run.training_env(cfg, mlflow_run.ensure_run(cfg, round_no))
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield REPORT_TO[cfg.tracking.backend]
        if cfg.tracking.backend == "comet":
            comet_run.end_training(cfg, round_no)
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
