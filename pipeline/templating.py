"""The one Jinja2 set-up every template in duo goes through (prompts, model and
dataset cards, reports).

Templates are plain text (no HTML escaping) with ``StrictUndefined``, so a missing variable is
an error, never an empty string. Report templates also trim block lines (``trim=True``) and
get the report's filters.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=16)
def environment(folder: str | Path = TEMPLATES_DIR, *, trim: bool = False,
                keep_trailing_newline: bool = True):
    """A Jinja2 environment loading from ``folder`` (cached per folder and options)."""
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)),
                              undefined=jinja2.StrictUndefined,
                              trim_blocks=trim,
                              lstrip_blocks=trim,
                              keep_trailing_newline=keep_trailing_newline,
                              autoescape=False)  # prompts, cards and markdown are text, not HTML


def render_file(name: str, folder: str | Path = TEMPLATES_DIR, **variables) -> str:
    """Render template ``name`` from ``folder`` (default ``pipeline/templates``)."""
    return environment(folder).get_template(name).render(**variables)
