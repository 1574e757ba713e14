"""Task config: one YAML file, checked against ``schemas/config.schema.json``, loaded into frozen dataclasses.

Precedence: schema defaults < YAML < ``--set section.key=value`` overrides.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .schemas import load_schema, schema_problems

DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "gemini": "GEMINI_API_KEY"}


@dataclass(frozen=True)
class TaskConfig:
    name: str
    description: str


@dataclass(frozen=True)
class TestSplitConfig:
    size: float
    seed: int


@dataclass(frozen=True)
class ColumnsConfig:
    instruction: str
    response: str
    category: str | None


@dataclass(frozen=True)
class DataConfig:
    source: str
    format: str
    split: str
    columns: ColumnsConfig
    on_bad_row: str
    limit: int | None
    test: TestSplitConfig


@dataclass(frozen=True)
class StudentConfig:
    model: str
    revision: str | None
    gguf_package: str | None
    gguf_file: str | None
    chat_template: str | None
    dtype: str


@dataclass(frozen=True)
class FinetuneConfig:
    lora: dict
    sft: dict
    quantization: dict
    max_train_samples: int | None


@dataclass(frozen=True)
class InferConfig:
    backend: str
    batch_size: int
    max_new_tokens: int
    do_sample: bool
    temperature: float
    top_p: float
    max_test_samples: int | None


@dataclass(frozen=True)
class ServiceLLMConfig:
    provider: str
    model: str
    base_url: str | None
    api_key_env: str
    rpm: float | None
    tpm: float | None
    concurrency: int
    price_input_per_1m: float
    price_output_per_1m: float
    params: dict
    timeout_s: float
    max_retries: int
    schema_retries: int
    structured_output: bool


@dataclass(frozen=True)
class ServiceConfig:
    synthesize: ServiceLLMConfig | None
    judge: ServiceLLMConfig | None


@dataclass(frozen=True)
class SynthesizeConfig:
    samples: int
    growth: float
    schedule: list | None
    pairs_per_request: int
    prompt: str
    schema: str
    min_response_chars: int
    near_duplicate_threshold: float
    decontamination_threshold: float
    max_attempts: int
    seed: int
    batch_api: bool

    def target_for_round(self, round_no: int) -> int:
        """Synthetic samples to add in ``round_no`` (1-based)."""
        if self.schedule:
            return self.schedule[min(round_no, len(self.schedule)) - 1]
        return round(self.samples * self.growth ** (round_no - 1))


@dataclass(frozen=True)
class RuleCondition:
    metric: str
    stat: str
    min: float


@dataclass(frozen=True)
class EvaluateConfig:
    judge_repeats: int
    prompt: str
    schema: str
    metrics: list
    thresholds: dict
    pass_rule: list  # list[RuleCondition]
    offline_pass_rule: list | None
    bootstrap_samples: int
    confidence: float
    embedding_model: str


@dataclass(frozen=True)
class BudgetConfig:
    max_rounds: int
    max_synthetic_samples: int
    max_spend_usd: float


@dataclass(frozen=True)
class StoreConfig:
    kind: str
    path: str
    namespace: str | None
    dataset_repo: str
    model_repo: str
    private: bool


@dataclass(frozen=True)
class ReportConfig:
    dir: str
    worst_samples: int
    label: str
    base_branch: str | None
    workflow: str


@dataclass(frozen=True)
class Config:
    task: TaskConfig
    data: DataConfig
    student: StudentConfig
    finetune: FinetuneConfig
    infer: InferConfig
    service: ServiceConfig
    synthesize: SynthesizeConfig
    evaluate: EvaluateConfig
    budget: BudgetConfig
    store: StoreConfig
    report: ReportConfig
    base_dir: Path = field(default=Path("."), compare=False)
    source_path: Path | None = field(default=None, compare=False)
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    def section_hash(self, *sections: str) -> str:
        """Short sha256 of the named sections of the resolved config (all sections when none are named)."""
        keys = sections or tuple(sorted(self.raw))
        blob = json.dumps({k: self.raw.get(k) for k in keys}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def resolve(self, path: str | Path) -> Path:
        """A path from the config, taken relative to the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)


# --------------------------------------------------------------------------- loading


def parse_override(item: str) -> tuple[list[str], Any]:
    """``section.key=value`` -> (["section", "key"], value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError([f"--set {item}: expected section.key=value"])
    key, value = item.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError([f"--set {item}: empty key; expected section.key=value"])
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return path, parsed


def apply_overrides(doc: dict, overrides: list[str] | None) -> dict:
    doc = copy.deepcopy(doc)
    for item in overrides or []:
        path, value = parse_override(item)
        node = doc
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
    return doc


def _fill_defaults(node: Any, schema: dict, root: dict) -> Any:
    """Fill schema ``default`` values into ``node`` (already validated), recursing into objects."""
    if "$ref" in schema:
        ref = schema["$ref"].lstrip("#/").split("/")
        target = root
        for part in ref:
            target = target[part]
        return _fill_defaults(node, target, root)
    if "oneOf" in schema and node is not None:
        for option in schema["oneOf"]:
            if option.get("type") != "null":
                return _fill_defaults(node, option, root)
    if isinstance(node, dict) and "properties" in schema:
        out = dict(node)
        for key, sub in schema["properties"].items():
            if key not in out:
                if "default" in sub:
                    out[key] = copy.deepcopy(sub["default"])
                elif sub.get("type") == "object":
                    out[key] = {}
                else:
                    continue
            out[key] = _fill_defaults(out[key], sub, root)
        return out
    return node


def _service(doc: dict | None, task: str) -> ServiceLLMConfig | None:
    if doc is None:
        return None
    doc = dict(doc)
    doc["api_key_env"] = doc.get("api_key_env") or DEFAULT_KEY_ENV[doc["provider"]]
    return ServiceLLMConfig(**doc)


def build_config(doc: dict, *, base_dir: Path = Path("."), source_path: Path | None = None) -> Config:
    """Validate a config document (defaults filled in) and build the frozen Config."""
    schema = load_schema("config.schema.json")
    problems = schema_problems(doc, schema)
    if problems:
        where = f"{source_path}: " if source_path else ""
        raise ConfigError([where + p for p in problems])
    doc = _fill_defaults(doc, schema, schema)
    task = doc["task"]["name"]
    d = doc["data"]
    st = doc["store"]
    ev = dict(doc["evaluate"])
    ev["pass_rule"] = [RuleCondition(**{"stat": "mean", **c}) for c in ev["pass_rule"]]
    if ev.get("offline_pass_rule") is not None:
        ev["offline_pass_rule"] = [RuleCondition(**{"stat": "mean", **c}) for c in ev["offline_pass_rule"]]
    ft = doc["finetune"]
    return Config(
        task=TaskConfig(**doc["task"]),
        data=DataConfig(
            **{k: v for k, v in d.items() if k not in ("columns", "test")},
            columns=ColumnsConfig(**d["columns"]),
            test=TestSplitConfig(**d["test"]),
        ),
        student=StudentConfig(**doc["student"]),
        finetune=FinetuneConfig(
            lora=ft.get("lora") or {}, sft=ft.get("sft") or {}, quantization=ft.get("quantization") or {},
            max_train_samples=ft["max_train_samples"],
        ),
        infer=InferConfig(**doc["infer"]),
        service=ServiceConfig(
            synthesize=_service(doc["service"].get("synthesize"), task),
            judge=_service(doc["service"].get("judge"), task),
        ),
        synthesize=SynthesizeConfig(**doc["synthesize"]),
        evaluate=EvaluateConfig(**ev),
        budget=BudgetConfig(**doc["budget"]),
        store=StoreConfig(
            kind=st["kind"],
            path=st["path"] or str(Path(".duo") / task),
            namespace=st["namespace"],
            dataset_repo=st["dataset_repo"] or f"{task}-duo-data",
            model_repo=st["model_repo"] or f"{task}-duo-adapter",
            private=st["private"],
        ),
        report=ReportConfig(**doc["report"]),
        base_dir=base_dir,
        source_path=source_path,
        raw=doc,
    )


def read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config ({exc.strerror or exc})"]) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError([f"{where}: invalid YAML ({getattr(exc, 'problem', None) or exc})"]) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError([f"{path}: (top): found {type(doc).__name__}; expected a mapping of sections"])
    return doc


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, override, validate and build the task config at ``path``."""
    path = Path(path)
    doc = apply_overrides(read_yaml(path), overrides)
    return build_config(doc, base_dir=path.resolve().parent, source_path=path)
