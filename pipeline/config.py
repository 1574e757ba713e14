"""Task config: one YAML file, checked against ``schemas/config.schema.json``, loaded
into frozen dataclasses.

Precedence: schema defaults < YAML < ``--set section.key=value`` overrides. The dataclasses
live in ``pipeline.config_types`` and are re-exported here, so
``from pipeline.config import Config`` keeps working.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from .config_reads import built_at
from .config_types import (
    BudgetConfig,
    ColumnsConfig,
    Config,
    DataConfig,
    EvaluateConfig,
    FinetuneConfig,
    InferConfig,
    ReportConfig,
    RuleCondition,
    ServiceConfig,
    ServiceLLMConfig,
    StoreConfig,
    StudentConfig,
    SynthesizeConfig,
    TaskConfig,
    TestSplitConfig,
)
from .errors import ConfigError
from .schemas import load_schema, schema_problems

__all__ = [
    "DEFAULT_KEY_ENV", "BudgetConfig", "ColumnsConfig", "Config", "DataConfig", "EvaluateConfig",
    "FinetuneConfig", "InferConfig", "ReportConfig", "RuleCondition", "ServiceConfig",
    "ServiceLLMConfig", "StoreConfig", "StudentConfig", "SynthesizeConfig", "TaskConfig",
    "TestSplitConfig", "apply_overrides", "build_config", "load_config", "parse_override",
    "read_yaml",
]

DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "gemini": "GEMINI_API_KEY"}


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
    """Fill schema ``default`` values into ``node`` (already validated), recursing into objects.

    A key the document sets keeps its value; only missing keys take the default, so
    ``finetune.lora: {r: 16}`` keeps the other LoRA defaults.
    """
    if "$ref" in schema:
        ref = schema["$ref"].lstrip("#/").split("/")
        target = root
        for part in ref:
            target = target[part]
        return _fill_defaults(node, target, root)
    if "oneOf" in schema and node is not None:
        # The option of the node's shape (one judge or a list of them); options that only add
        # `required` fall through.
        kind = "array" if isinstance(node, list) else "object"
        for option in schema["oneOf"]:
            if option.get("type") == kind or (kind == "object" and "$ref" in option):
                return _fill_defaults(node, option, root)
    if isinstance(node, list) and isinstance(schema.get("items"), dict):
        return [_fill_defaults(item, schema["items"], root) for item in node]
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


def _derived(doc: dict) -> dict:
    """A copy of the filled document with the values that follow from other keys: the store's
    folder and repos from the task name, each service's key variable from its provider, a pass
    rule's ``stat`` (``mean``).

    Kept out of ``Config.raw``, so the config hashes stay those of what the user wrote
    plus the schema defaults.
    """
    doc = copy.deepcopy(doc)
    task, store = doc["task"]["name"], doc["store"]
    store["path"] = store["path"] or str(Path(".duo") / task)
    store["dataset_repo"] = store["dataset_repo"] or f"{task}-duo-data"
    store["model_repo"] = store["model_repo"] or f"{task}-duo-adapter"
    judges = doc["service"].get("judge")
    judges = judges if isinstance(judges, list) else [judges] if judges else []
    doc["service"]["judges"], doc["service"]["judge"] = judges, judges[0] if judges else None
    for service in [doc["service"].get("synthesize"), *judges]:
        if service is not None:
            service["api_key_env"] = service.get("api_key_env") or DEFAULT_KEY_ENV[service["provider"]]
    evaluate = doc["evaluate"]
    for key in ("pass_rule", "offline_pass_rule"):
        if evaluate.get(key) is not None:
            evaluate[key] = [{"stat": "mean", **rule} for rule in evaluate[key]]
    return doc


def _value(hint: Any, value: Any, path: str) -> Any:
    """``value`` as the field type ``hint`` wants it: dataclasses (also inside ``X | None`` and
    ``list[X]``) built, each knowing its dotted ``path`` (the items of a list share the list's)."""
    if value is None:
        return None
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _value(args[0], value, path)
    if origin is list and args and dataclasses.is_dataclass(args[0]):
        return [_build(args[0], item, path) for item in value]
    return value


def _build(cls: type, doc: dict, path: str = "", **given: Any) -> Any:
    """The frozen dataclass ``cls`` from its section of the document (a missing key is
    None); ``given`` wins."""
    hints = typing.get_type_hints(cls)
    values = {f.name: _value(hints[f.name], doc.get(f.name), f"{path}.{f.name}" if path else f.name)
              for f in dataclasses.fields(cls) if f.name not in given}
    built = cls(**values, **given)
    built_at(built, path)
    return built


def build_config(doc: dict, *, base_dir: Path = Path("."), source_path: Path | None = None) -> Config:
    """Validate a config document, fill in the schema defaults and build the frozen Config."""
    schema = load_schema("config.schema.json")
    problems = schema_problems(doc, schema)
    if problems:
        where = f"{source_path}: " if source_path else ""
        raise ConfigError([where + p for p in problems])
    doc = _fill_defaults(doc, schema, schema)
    return _build(Config, _derived(doc), base_dir=base_dir, source_path=source_path, raw=doc)


def read_yaml(path: Path) -> dict:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config ({exc.strerror or exc})"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = f"byte 0x{data[exc.start]:02x} at offset {exc.start}"
        raise ConfigError([f"{path}:{line}: not UTF-8 text ({byte}); save the config as UTF-8"]) from None
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
