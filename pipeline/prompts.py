"""Prompt templates (Jinja2 files) rendered into chat messages, and the JSON
Schemas replies must follow.

A template is found by name: first relative to the config file, then in ``prompts/`` beside
the config, then in the ``prompts/`` folder of duo's own checkout (the editable copy teams
change), then in the defaults packaged with duo (``pipeline/prompts_default``, a link to that
same ``prompts/`` folder in git, so a built wheel or ``pip install .`` ships the files). It
holds ``{% block system %}`` (optional) and ``{% block user %}``; a template without a user
block is all user message.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import jinja2
import jsonschema

import pipeline

from .config import Config
from .errors import DuoError
from .templating import environment

PROMPTS_DIR = Path(pipeline.__file__).resolve().parent.parent / "prompts"  # in a checkout (editable install)
PACKAGED_PROMPTS_DIR = Path(pipeline.__file__).resolve().parent / "prompts_default"  # in every install
SCHEMAS_DIR = Path(pipeline.__file__).resolve().parent / "schemas"


def _find(cfg: Config, name: str, folders: list[Path], kind: str) -> Path:
    candidates = [cfg.resolve(name)] + [folder / name for folder in folders]
    for path in candidates:
        if path.is_file():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise DuoError(f"{kind} '{name}' not found (looked in: {tried})")


def find_template(cfg: Config, name: str) -> Path:
    """The template file ``name``: config-relative, ``prompts/`` beside the config, duo's
    ``prompts/``, packaged."""
    folders = [cfg.resolve("prompts"), PROMPTS_DIR, PACKAGED_PROMPTS_DIR]
    return _find(cfg, name, list(dict.fromkeys(f for f in folders if f.is_dir())), "prompt template")


@lru_cache(maxsize=32)
def _load(path: str, mtime: float) -> jinja2.Template:
    env = environment(str(Path(path).parent), keep_trailing_newline=False)
    try:
        return env.get_template(Path(path).name)
    except jinja2.TemplateSyntaxError as exc:
        raise DuoError(f"{path}:{exc.lineno}: template syntax error ({exc.message})") from None


def render(cfg: Config, name: str, **variables) -> list[dict]:
    """Render template ``name`` into chat messages: ``[{"role": "system", ...}?, {"role": "user", ...}]``."""
    path = find_template(cfg, name)
    template = _load(str(path), path.stat().st_mtime)
    try:
        if "user" not in template.blocks:
            return [{"role": "user", "content": template.render(**variables).strip()}]
        ctx = template.new_context(dict(variables))
        messages = []
        for role in ("system", "user"):
            if role in template.blocks:
                text = "".join(template.blocks[role](ctx)).strip()
                if text:
                    messages.append({"role": role, "content": text})
    except jinja2.UndefinedError as exc:
        given = ", ".join(sorted(variables)) or "none"
        raise DuoError(f"{path}: {exc.message} (variables given: {given})") from None
    except jinja2.TemplateError as exc:
        raise DuoError(f"{path}: cannot render ({exc})") from None
    return messages


def find_schema(cfg: Config, name: str) -> Path:
    """The reply schema file ``name``: config-relative first, then ``pipeline/schemas/``."""
    return _find(cfg, name, [SCHEMAS_DIR], "reply schema")


def load_reply_schema(cfg: Config, name: str) -> dict:
    """The JSON Schema ``name`` a service reply must follow: config-relative first, then
    ``pipeline/schemas/``."""
    path = find_schema(cfg, name)
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DuoError(f"{path}:{exc.lineno}: reply schema is not valid JSON ({exc.msg})") from None
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise DuoError(f"{path}: not a valid JSON Schema ({exc.message})") from None
    return schema
