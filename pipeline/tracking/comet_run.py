"""A round as a Comet experiment, through ``comet_ml`` (imported inside the functions).

Online with ``$COMET_API_KEY`` (workspace ``tracking.comet_workspace``, project ``tracking.comet_project``,
else the experiment name, else the task name); with ``tracking.comet_offline_dir`` Comet's offline mode
writes one zip archive per logging into that folder, to upload later (``comet upload <archive>.zip``).
Each round's experiment has a fixed key made from the workspace, project, task and round, opened in
``get_or_create`` mode: a rerun, the trainer's curves and the round's figures all land in the same
experiment (offline archives of one key merge when uploaded).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..config import Config
from ..errors import DuoError
from .figures import RoundRecord, run_name

API_KEY_ENV = "COMET_API_KEY"
NO_KEY = (f"tracking.backend: comet online needs its API key in ${API_KEY_ENV}, which is not set; "
          "set it, or set tracking.comet_offline_dir to write archives to upload later")


def project(cfg: Config) -> str:
    t = cfg.tracking
    return t.comet_project or t.experiment or cfg.task.name


def offline_dir(cfg: Config) -> Path | None:
    return Path(cfg.resolve(cfg.tracking.comet_offline_dir)) if cfg.tracking.comet_offline_dir else None


def experiment_key(cfg: Config, round_no: int) -> str:
    """The round's experiment key: 40 hex characters (Comet takes 32 to 50 letters and digits)."""
    who = f"{cfg.tracking.comet_workspace or ''}/{project(cfg)}/{cfg.task.name}/{round_no}"
    return hashlib.sha256(who.encode()).hexdigest()[:40]


def _failed(exc: Exception) -> DuoError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return DuoError(f"tracking (comet): {first}; the round's artifacts are kept: "
                    "rerun the same command to log the round")


def _start(cfg: Config, round_no: int):
    import comet_ml

    folder = offline_dir(cfg)
    if folder is None and not os.environ.get(API_KEY_ENV):
        raise DuoError(NO_KEY)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    # Only what duo logs: no source code, git patch, environment, console or framework auto-logging.
    config = comet_ml.ExperimentConfig(log_code=False, log_graph=False, parse_args=False, log_git_metadata=False,
                                       log_git_patch=False, log_env_details=False, auto_output_logging=False,
                                       auto_param_logging=False, auto_metric_logging=False,
                                       display_summary_level=0, name=run_name(cfg, round_no),
                                       offline_directory=str(folder) if folder else None)
    return comet_ml.start(workspace=cfg.tracking.comet_workspace, project_name=project(cfg),
                          experiment_key=experiment_key(cfg, round_no), mode="get_or_create",
                          online=folder is None, experiment_config=config)


def training_env(cfg: Config, round_no: int) -> dict:
    """The variables transformers' CometCallback reads (``comet_ml.start`` takes the key and project from
    them), so TRL's curves land in the round's experiment."""
    env = {"COMET_EXPERIMENT_KEY": experiment_key(cfg, round_no), "COMET_MODE": "get_or_create",
           "COMET_PROJECT_NAME": project(cfg), "COMET_LOG_ASSETS": "FALSE",
           "COMET_START_ONLINE": "false" if offline_dir(cfg) else "true"}
    if cfg.tracking.comet_workspace:
        env["COMET_WORKSPACE"] = cfg.tracking.comet_workspace
    if (folder := offline_dir(cfg)) is not None:
        folder.mkdir(parents=True, exist_ok=True)
        env["COMET_OFFLINE_DIRECTORY"] = str(folder)
    return env


def end_training(cfg: Config, round_no: int) -> None:
    """End the experiment transformers' CometCallback opened for the round (it leaves it to the process's
    exit): its data is sent, or its offline archive written, when the fine-tuning returns."""
    import comet_ml

    exp = comet_ml.get_running_experiment()
    if exp is not None and exp.get_key() == experiment_key(cfg, round_no):
        exp.end()


def link(cfg: Config, round_no: int) -> dict:
    """Where the round's experiment is: ``url`` online (Comet's experiment page), None offline."""
    key = experiment_key(cfg, round_no)
    if offline_dir(cfg) is not None:
        return {"run_id": key, "url": None, "where": f"Comet offline archives in {offline_dir(cfg)}"}
    ws = cfg.tracking.comet_workspace
    url = f"https://www.comet.com/{ws}/{project(cfg)}/{key}" if ws else None
    return {"run_id": key, "url": url, "where": f"Comet project {project(cfg)}"}


def log(cfg: Config, round_no: int, record: RoundRecord) -> dict:
    """Log ``record`` into the round's experiment: params as parameters, metrics at step ``round_no``,
    tags as "others" (key/value) plus ``round-N`` and the decision as Comet tags, files as assets."""
    try:
        exp = _start(cfg, round_no)
        try:
            exp.log_parameters(record.params)
            exp.log_metrics(record.metrics, step=round_no)
            exp.log_others(record.tags)
            exp.add_tags([f"round-{round_no}"] + ([record.tags["duo.decision"]] if "duo.decision" in record.tags
                                                   else []))
            for path, folder in record.files.items():
                exp.log_asset(str(path), file_name=f"{folder}/{Path(path).name}", overwrite=True)
            url = None if offline_dir(cfg) else getattr(exp, "url", None)
        finally:
            exp.end()
    except DuoError:
        raise
    except Exception as exc:  # noqa: BLE001 — the tracker's errors: one line
        raise _failed(exc) from None
    return {**link(cfg, round_no), **({"url": url} if url else {})}
