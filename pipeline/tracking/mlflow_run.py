"""A round as an MLflow run, through MLflow's own client (``mlflow`` is imported inside the functions).

Where: ``tracking.uri`` (a server, ``http://host:5000``, or any store URI MLflow takes), else the embedded
default, a SQLite database beside the duo store (``<store>/../mlflow.db``, its files in
``<store>/../mlflow-artifacts``), which ``mlflow ui --backend-store-uri sqlite:///...`` shows. One
experiment per task (``tracking.experiment``, default the task name), one run per round, found again by
its tags ``duo.task`` and ``duo.round``: a rerun of the round updates the same run.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..config import Config
from ..errors import DuoError
from .figures import RoundRecord, run_name, run_tags

MAX_PARAM = 6000  # MLflow's longest param value


def store_root(cfg: Config) -> Path:
    return Path(cfg.resolve(cfg.store.path))


def tracking_uri(cfg: Config) -> str:
    """``tracking.uri``, else ``sqlite:///<store>/../mlflow.db``."""
    if cfg.tracking.uri:
        return cfg.tracking.uri
    return f"sqlite:///{store_root(cfg).parent.resolve() / 'mlflow.db'}"


def shown(uri: str) -> str:
    """``uri`` without a user or password in it: what reports, PR bodies and error lines may show."""
    parts = urlsplit(uri)
    if not parts.username and not parts.password:
        return uri
    return urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))


def embedded(cfg: Config) -> bool:
    return not cfg.tracking.uri


def ui_command(cfg: Config) -> str:
    """The command that shows the runs of a database URI (a server has its own address)."""
    return f"mlflow ui --backend-store-uri {shown(tracking_uri(cfg))}"


def experiment_name(cfg: Config) -> str:
    return cfg.tracking.experiment or cfg.task.name


def _client(cfg: Config):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri(cfg))


def _failed(cfg: Config, exc: Exception) -> DuoError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return DuoError(f"tracking (mlflow at {shown(tracking_uri(cfg))}): {first}; the round's artifacts are kept: "
                    "fix tracking.uri or start the server, then rerun the same command to log the round")


def _experiment_id(cfg: Config, client) -> str:
    name = experiment_name(cfg)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if embedded(cfg):  # not ./mlruns in whatever folder duo was started from
        location = (store_root(cfg).parent.resolve() / "mlflow-artifacts").as_uri()
    return client.create_experiment(name, artifact_location=location, tags={"duo.task": cfg.task.name})


def ensure_run(cfg: Config, round_no: int) -> dict:
    """The round's run, created when absent: ``run_id``, ``experiment_id``, ``url`` (None without a
    server), ``uri``."""
    try:
        client = _client(cfg)
        exp = _experiment_id(cfg, client)
        tags = run_tags(cfg, round_no)
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = client.search_runs([exp], filter_string=query, max_results=1, order_by=["attributes.start_time ASC"])
        run = runs[0] if runs else client.create_run(exp, tags=tags, run_name=run_name(cfg, round_no))
    except DuoError:
        raise
    except Exception as exc:  # noqa: BLE001 — the tracker's errors (HTTP, SQL, MlflowException): one line
        raise _failed(cfg, exc) from None
    return {"run_id": run.info.run_id, "experiment_id": exp, "url": run_url(cfg, exp, run.info.run_id),
            "uri": tracking_uri(cfg)}


def run_url(cfg: Config, experiment_id: str, run_id: str) -> str | None:
    uri = shown(tracking_uri(cfg))
    if not uri.startswith(("http://", "https://")):
        return None
    return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def training_env(cfg: Config, run: dict) -> dict:
    """The variables transformers' MLflowCallback reads, so TRL's loss curves land in the round's run.
    ``MLFLOW_MAX_LOG_PARAMS=0``: the callback logs no params (duo logs the recipe as ``lora.*``/``sft.*``,
    and a rerun's changed trainer folder would be refused as a changed param)."""
    return {"MLFLOW_TRACKING_URI": run["uri"], "MLFLOW_EXPERIMENT_NAME": experiment_name(cfg),
            "MLFLOW_RUN_ID": run["run_id"], "MLFLOW_MAX_LOG_PARAMS": "0"}


def _text(value) -> str:
    return str(value)[:MAX_PARAM]


def log(cfg: Config, round_no: int, record: RoundRecord) -> dict:
    """Log ``record`` into the round's run (created when absent). Params already there keep their value
    (MLflow refuses a change: the ones that differ are listed in tag ``duo.params_changed``); metrics
    whose latest value is the same are not logged again; files replace the same paths. Returns
    ensure_run's dict and ``changed`` (param names)."""
    from mlflow.entities import Metric, Param, RunTag

    run = ensure_run(cfg, round_no)
    try:
        client = _client(cfg)
        now = client.get_run(run["run_id"]).data
        params = {k: _text(v) for k, v in record.params.items()}
        changed = sorted(k for k, v in params.items() if k in now.params and now.params[k] != v)
        new = [Param(k, v) for k, v in params.items() if k not in now.params]
        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, round_no) for k, v in record.metrics.items() if now.metrics.get(k) != v]
        tags = {**record.tags, **({"duo.params_changed": ", ".join(changed)} if changed else {})}
        tags = [RunTag(k, _text(v)) for k, v in tags.items()]
        for i in range(0, max(len(new), len(metrics), 1), 100):  # MLflow takes 100 params a batch
            client.log_batch(run["run_id"], metrics=metrics[i:i + 100] if i < len(metrics) else [],
                             params=new[i:i + 100], tags=tags if i == 0 else [])
        for path, folder in record.files.items():
            client.log_artifact(run["run_id"], str(path), artifact_path=folder)
        client.set_terminated(run["run_id"], "FINISHED")
    except Exception as exc:  # noqa: BLE001
        raise _failed(cfg, exc) from None
    return {**run, "changed": changed}
