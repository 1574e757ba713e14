"""Which config keys a stage reads: every config section knows its dotted path, and while a test
records (``recording()``) each key read is noted under the stage reading it (``in_stage``). The
declared inputs of each artifact (``pipeline.artifacts``) are checked against these reads.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

_reads: dict[str | None, set[str]] | None = None
_stage: str | None = None
_born = itertools.count()  # each built section's serial: a recording notes only sections built after it began
_since = 0
NOT_KEYS = ("base_dir", "source_path", "raw")  # Config fields that are not keys of the YAML file
ALIASES = {"service.judges": "service.judge"}  # derived fields, named by the key they come from


class Section:
    """Base of every config section. Each built section knows its dotted path (``synthesize.length_filter``);
    while ``recording()`` is on, reading one of its keys notes that path."""

    def __getattribute__(self, name: str):
        value = object.__getattribute__(self, name)
        if _reads is not None and name[0] != "_":
            own = object.__getattribute__(self, "__dict__")
            path = own.get("_path") if own.get("_born", -1) >= _since else None  # not another config's
            fields = object.__getattribute__(self, "__dataclass_fields__")
            if path is not None and name in fields and name not in NOT_KEYS and not _is_section(value):
                _reads.setdefault(_stage, set()).add(_named(f"{path}.{name}" if path else name))
        return value


def built_at(section: Section, path: str) -> None:
    """Tell a section just built its dotted path and when it was built (for ``recording``)."""
    object.__setattr__(section, "_path", path)
    object.__setattr__(section, "_born", next(_born))


def _named(key: str) -> str:
    for derived, source in ALIASES.items():
        if key == derived or key.startswith(derived + "."):
            return source + key[len(derived):]
    return key


def _is_section(value) -> bool:
    return isinstance(value, Section) or (isinstance(value, list) and bool(value)
                                          and isinstance(value[0], Section))


@contextmanager
def recording() -> Iterator[dict[str | None, set[str]]]:
    """Note every config key read, by the stage reading it (``in_stage``):
    ``{stage: {"synthesize.samples", ...}}``."""
    global _reads, _since
    (_reads, before), _since = ({}, _reads), next(_born)
    try:
        yield _reads
    finally:
        _reads = before


@contextmanager
def in_stage(stage: str) -> Iterator[None]:
    """Reads inside this block belong to ``stage`` (only matters while recording)."""
    global _stage
    _stage, before = stage, _stage
    try:
        yield
    finally:
        # Only the innermost block restores: two threads in the same stage at once (concurrent decides)
        # must not leave the stage set after both have left it.
        if _stage == stage:
            _stage = before if before != stage else None
