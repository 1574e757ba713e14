"""Loading the coverage dataset: a local JSONL / JSON list / CSV / parquet file, or a Hugging Face
Hub dataset. (``data.format`` is the file format; how a row holds its example, columns or chat
turns, is ``data.shape``.)

Every record comes back with where it was (line of a JSONL/CSV file, else its 1-based row
number), so a bad row can be named precisely. A record that cannot even be parsed (a broken JSONL
line) comes back with ``error`` set rather than stopping the load: deciding what to do with it is
the prepare stage's job.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import DuoError
from .stored_completions import SOURCE as STORED  # data.source naming OpenAI's stored chat completions
from .stored_completions import rows_digest, stored_rows
from .traffic import folder_digest, teacher_rows

FILE_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class SourceRow:
    """One record: ``number`` is its 1-based position among the records, ``line`` its line in the
    file (JSONL/CSV) or the same as ``number``; ``error`` says why it could not be parsed (``data``
    is then the raw text)."""

    number: int
    line: int
    data: Any
    error: str | None = None


@dataclass
class Source:
    """The loaded records and what they came from. ``unit`` is ``line`` or ``row``:
    how to name a position."""

    location: str
    format: str
    unit: str
    fingerprint: str | None
    rows: list[SourceRow] = field(default_factory=list)

    def where(self, row: SourceRow) -> str:
        """``path:LINE`` for line-based files, ``source row N`` otherwise."""
        return f"{self.location}:{row.line}" if self.unit == "line" else f"{self.location} row {row.line}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _captures(folder: Path) -> bool:
    """True when ``folder`` holds capture files (``*.jsonl`` or ``<day>/*.jsonl``): gateway traffic."""
    return any(folder.glob("*.jsonl")) or any(folder.glob("*/*.jsonl"))


def detect_format(cfg: Config) -> str:
    """The configured format, or one told by the file suffix; a name with no known
    suffix is a Hub dataset id. A local folder is neither: one line names it."""
    fmt = cfg.data.format
    if fmt == "stored_completions" or (fmt == "auto" and cfg.data.source == STORED):
        return "stored_completions"
    folder = cfg.resolve(cfg.data.source)
    if fmt == "traffic" or (fmt == "auto" and folder.is_dir() and _captures(folder)):
        return "traffic"  # a folder of captured gateway traffic (pipeline.data.traffic)
    if fmt != "hub" and folder.is_dir():
        raise DuoError(f"data.source {cfg.data.source}: {folder} is a folder; expected a data file "
                       "(.jsonl, .json, .csv, .parquet) or a Hugging Face Hub dataset id")
    if fmt != "auto":
        return fmt
    suffix = Path(cfg.data.source).suffix.lower()
    if suffix in FILE_FORMATS:
        return FILE_FORMATS[suffix]
    if cfg.resolve(cfg.data.source).is_file():
        raise DuoError(f"data.source {cfg.data.source}: cannot tell the format from the suffix '{suffix}'; "
                       f"set data.format to one of jsonl, json, csv, parquet")
    return "hub"


def _jsonl(path: Path) -> Iterator[SourceRow]:
    number = 0
    with path.open(encoding="utf-8-sig") as fh:  # a BOM (spreadsheet exports) is not part of the data
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            number += 1
            try:
                yield SourceRow(number, lineno, json.loads(line))
            except json.JSONDecodeError as exc:
                yield SourceRow(number, lineno, line.rstrip("\n"), f"not valid JSON ({exc.msg})")


def _is_json_list(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4096).lstrip().lstrip(b"\xef\xbb\xbf").lstrip().startswith(b"[")


def _one_json_object(path: Path) -> bool:
    """True when the whole file is a single JSON object (not a list, not one object per line)."""
    try:
        return isinstance(json.loads(path.read_text(encoding="utf-8-sig")), dict)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def _json(path: Path) -> Iterator[SourceRow]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise DuoError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, list):
        raise DuoError(f"{path}: expected a JSON list of records (or one JSON object per line)")
    for i, item in enumerate(data, 1):
        yield SourceRow(i, i, item)


def _csv(path: Path) -> Iterator[SourceRow]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        start = 2  # line 1 is the header
        for number, record in enumerate(reader, 1):
            extra = record.pop(None, None)  # DictReader puts surplus fields under the key None
            error = f"has {len(extra)} more field(s) than the header" if extra else None
            yield SourceRow(number, start, record, error)
            start = reader.line_num + 1


def _check_header(cfg: Config, path: Path) -> None:
    """A CSV whose header lacks a mapped column fails at once, saying what the header has."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), [])
    except UnicodeDecodeError as exc:
        raise DuoError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    cols = cfg.data.columns
    wanted = {"instruction": cols.instruction, "response": cols.response, "category": cols.category,
              "system": cols.system}
    missing = [f"'{col}' (data.columns.{key})" for key, col in wanted.items() if col and col not in header]
    if missing:
        found = ", ".join(f"'{h}'" for h in header) or "nothing"
        raise DuoError(f"{path}:1: CSV header has {found}; expected column {', '.join(missing)}")


def _parquet(path: Path) -> Iterator[SourceRow]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DuoError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several unrelated types for a damaged file
        raise DuoError(f"{path}: cannot read parquet ({exc})") from None
    for i, record in enumerate(table.to_pylist(), 1):
        yield SourceRow(i, i, record)


def _hub(cfg: Config) -> Iterator[SourceRow]:
    try:
        import datasets
    except ImportError:
        raise DuoError(f"data.source {cfg.data.source}: loading a Hub dataset needs `datasets` "
                       f"(pip install -e '.[train]')") from None
    try:
        ds = datasets.load_dataset(cfg.data.source, split=cfg.data.split)
    except Exception as exc:  # noqa: BLE001 - network, auth, missing repo or split: one line for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DuoError(f"data.source {cfg.data.source} (split {cfg.data.split}): cannot load from the Hub "
                       f"({first})") from None
    for i, record in enumerate(ds, 1):
        yield SourceRow(i, i, record)


def _live_digest(cfg: Config, fmt: str) -> str:
    """The content hash of live traffic: the capture folder's files, or the stored completions listed."""
    if fmt == "traffic":
        return folder_digest(cfg.resolve(cfg.data.source))
    return rows_digest(stored_rows(cfg))


def _live(cfg: Config, fmt: str) -> tuple[Source, Iterator[SourceRow]]:
    """Live traffic as rows: the service's answers of a capture folder, or OpenAI's stored completions."""
    if fmt == "traffic":
        folder = cfg.resolve(cfg.data.source)
        src = Source(str(folder), "traffic", "row", folder_digest(folder))
        return src, (SourceRow(n, n, data, error) for n, data, error in teacher_rows(folder))
    listed = stored_rows(cfg, again=False)
    src = Source(STORED, "stored_completions", "row", rows_digest(listed))
    return src, (SourceRow(i, i, row) for i, row in enumerate(listed, 1))


def fingerprint(cfg: Config) -> str | None:
    """sha256 of the source file (None for a Hub dataset): tells whether the data changed
    under the same config."""
    fmt = detect_format(cfg)
    if fmt == "hub":
        return None
    if fmt in ("traffic", "stored_completions"):
        return _live_digest(cfg, fmt)
    path = cfg.resolve(cfg.data.source)
    if not path.is_file():
        raise DuoError(f"data.source: file not found: {path}")
    return _sha256(path)


def load_source(cfg: Config, head: int | None = None) -> Source:
    """Read ``cfg.data.source`` (first ``cfg.data.limit`` records when set; first ``head`` when given, as
    ``duo validate`` does)."""
    fmt = detect_format(cfg)
    limit = min(n for n in (cfg.data.limit, head) if n is not None) if (cfg.data.limit or head) else None
    if fmt == "hub":
        src = Source(cfg.data.source, "hub", "row", None)
        rows = _hub(cfg)
    elif fmt in ("traffic", "stored_completions"):
        src, rows = _live(cfg, fmt)
    else:
        path = cfg.resolve(cfg.data.source)
        if not path.is_file():
            raise DuoError(f"data.source: file not found: {path}")
        if fmt == "json" and not _is_json_list(path):
            if _one_json_object(path):
                raise DuoError(f"{path}: found one JSON object; expected a JSON list of records "
                               "or one JSON object per line, each with the data.columns")
            fmt = "jsonl"  # a .json file holding one object per line is common enough to accept
        # Chat turns cannot sit in CSV columns: each row says why.
        if fmt == "csv" and cfg.data.shape != "chat":
            _check_header(cfg, path)
        unit = "line" if fmt in ("jsonl", "csv") else "row"
        src = Source(str(path), fmt, unit, _sha256(path))
        rows = {"jsonl": _jsonl, "json": _json, "csv": _csv, "parquet": _parquet}[fmt](path)
    try:
        for row in rows:
            if limit is not None and row.number > limit:
                break
            src.rows.append(row)
    except UnicodeDecodeError as exc:
        raise DuoError(f"{src.location}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return src
