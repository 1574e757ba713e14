"""JSONL records: one JSON object per line, written atomically, read with line numbers in errors."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import DuoError


def write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    """Write ``rows`` to ``path`` through a temp file and rename; returns the row count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("wb") as fh:
        for row in rows:
            fh.write(_line(row))
            n += 1
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return n


def _line(row: dict) -> bytes:
    """One row as a UTF-8 JSON line. A string that UTF-8 cannot hold (a lone surrogate, as a JSON
    ``"\\ud800"`` escape decodes) is written as JSON escapes, which read back the same: a bad
    row is kept as it came, never lost to a crash."""
    text = json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n"
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(row, sort_keys=True) + "\n").encode("ascii")


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, row) for each non-blank line; a line that is not a JSON object
    raises DuoError naming it."""
    with Path(path).open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DuoError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DuoError(f"{path}:{lineno}: expected a JSON object, found {type(row).__name__}")
            yield lineno, row


def read_jsonl(path: Path) -> list[dict]:
    return [row for _, row in iter_jsonl(path)]
