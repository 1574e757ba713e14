"""Labels exported from an annotation tool: a CSV file with columns ``id``, ``label`` (good|bad) and
``reason`` (optional), and optionally ``who`` and ``when``. A bad row stops the import with one line
naming the file and row; nothing is stored then."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

from ..artifacts.feedback import VALUES
from ..errors import DuoError
from .collect import unknown

REQUIRED = ("id", "label")


def read_csv(path: Path, known: dict, round_no: int) -> list[dict]:
    """The labels of ``path``, each ``{id, label, reason, who, when, source: import, kind}``."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip().lower() for c in reader.fieldnames or []]
            missing = [c for c in REQUIRED if c not in columns]
            if missing:
                raise DuoError(f"{path}: missing column(s) {', '.join(missing)} "
                               "(expected id,label[,reason,who,when])")
            rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]
    except OSError as exc:
        raise DuoError(f"{path}: cannot read the labels file ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DuoError(f"{path}: not a UTF-8 CSV file ({exc})") from None
    when, who = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), f"import:{path.name}"
    out = []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        item_id, label = row.get("id", ""), row.get("label", "").lower()
        if not item_id:
            raise DuoError(f"{path}: row {line}: empty id")
        if label not in VALUES:
            raise DuoError(f"{path}: row {line}: label '{row.get('label', '')}' is not good or bad")
        if item_id not in known:
            raise DuoError(f"{path}: row {line}: {unknown(item_id, known, round_no)}")
        out.append({"id": item_id, "label": label, "reason": row.get("reason") or None,
                    "who": row.get("who") or who, "when": row.get("when") or when, "source": "import",
                    "kind": known[item_id]})
    return out
