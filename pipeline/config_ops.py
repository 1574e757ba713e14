"""Config sections for what happens around the loop: the rollout of the promoted student
(``rollout:``) and experiment tracking (``tracking:``). Built like every section in
``config_types`` (the loader reads field names and types); keys and defaults live in
``schemas/config.schema.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config_reads import Section


@dataclass(frozen=True)
class RolloutStudentConfig(Section):
    """Where the served student answers (``duo serve`` prints it): an OpenAI-compatible endpoint."""

    base_url: str = "http://127.0.0.1:8080/v1"
    model: str | None = None  # the served model's name; None: the task name
    api_key_env: str | None = None


@dataclass(frozen=True)
class RolloutConfig(Section):
    """``rollout:``: a canary of the promoted student against the service, through the team's gateway."""

    gateway: str = "litellm"  # litellm | portkey
    model_name: str | None = None  # the model name clients ask the gateway for; None: the task name
    student: RolloutStudentConfig = field(default_factory=RolloutStudentConfig)
    canary: float = 0.05  # the first weight of the student
    steps: list = field(default_factory=lambda: [0.05, 0.25, 1.0])
    shadow: float = 1.0  # share of the service's requests mirrored to the student, silently
    timeout_s: float = 30.0  # a student reply slower than this falls back to the service
    config_dir: str = "deploy"  # where the gateway configs are written (relative to the config file)
    traffic: str | None = None  # the captured traffic folder; None: <store>/traffic for a local store
    window_hours: float = 24.0
    min_prompts: int = 50
    student_cost_per_hour_usd: float = 0.0  # the GPU/CPU price of serving the student
    max_loss: float = 0.05  # ramp: the CI of the paired difference stays above -max_loss (duo canary)
    max_error_rate: float = 0.05  # rollback: the student's error rate above this (duo canary)


@dataclass(frozen=True)
class TrackingConfig(Section):
    """``tracking:``: each round as a run of an experiment tracker (``pipeline.tracking``)."""

    backend: str = "none"  # none | mlflow | comet
    uri: str | None = None  # mlflow: a tracking URI; None: sqlite beside the store
    experiment: str | None = None  # None: the task name
    comet_workspace: str | None = None
    comet_project: str | None = None
    comet_offline_dir: str | None = None  # comet offline mode: archives written here
