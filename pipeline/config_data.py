"""Config sections of ``data:`` added after ``config_types`` filled up: the teacher-data hygiene
filters (``data.hygiene``). Built like every section (the loader reads field names and types);
keys and defaults live in ``schemas/config.schema.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config_reads import Section


@dataclass(frozen=True)
class HygieneConfig(Section):
    """``data.hygiene``: which service answers are dropped from coverage and synthetic rows
    (``pipeline.data.hygiene``)."""

    refusals: bool = True  # the answer matches a refusal pattern (or the provider's content filter)
    truncated: bool = True  # the reply was cut at the token limit (finish_reason: length)
    empty: bool = True  # the answer is empty or blank
    errors: bool = True  # the logged call failed (an error instead of a reply)
    refusal_patterns: str | None = None  # a file of regexes (one a line); None: the packaged list
