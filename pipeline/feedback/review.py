"""The review block of a report PR: which answers it shows, and which of its boxes are ticked.

The block lists the ``report.review_worst`` lowest-scored answers by the decision metric and
``report.review_random`` more drawn at random (seeded by task and round, so a rerendered body shows
the same ones), each a task-list checkbox ``acceptable`` followed by the sample id in backticks. It
sits between ``START`` and ``END`` markers; only boxes inside them count.
"""

from __future__ import annotations

import random
import re

START = "<!-- duo-review -->"
END = "<!-- /duo-review -->"
BOX = re.compile(r"^[ \t]*[-*+][ \t]+\[(?P<mark>[ xX])\][ \t]+acceptable[ \t]+`(?P<id>[^`\n]+)`",
                 re.MULTILINE)
PROMPT_CHARS, ANSWER_CHARS = 120, 160


def excerpt(text: object, limit: int) -> str:
    """One line of at most ``limit`` characters, for a list item."""
    line = " ".join(str(text or "").split())
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"


def _item(row: dict, metric: str | None, labels: dict) -> dict:
    score = (row.get("scores") or {}).get(metric) if metric else None
    label = labels.get(str(row.get("id")))
    return {"id": str(row.get("id")), "score": score, "prompt": excerpt(row.get("instruction"), PROMPT_CHARS),
            "answer": excerpt(row.get("answer"), ANSWER_CHARS),
            "checked": bool(label and label.get("label") == "good")}


def review_samples(rows: list[dict], metric: str | None, n_worst: int, n_random: int, seed: str,
                   labels: dict | None = None) -> dict | None:
    """``{metric, worst, random}``: the ``n_worst`` lowest-scored rows by ``metric`` (ties by id, as the
    report's worst samples) and ``n_random`` of the others drawn with ``seed``; a box is rendered
    ticked where the id's current label (``labels``: id -> label) is good. None when nothing is shown."""
    labels = labels or {}
    rows = [r for r in rows if r.get("id") is not None and "`" not in str(r["id"])]
    scored = sorted((r for r in rows if metric and (r.get("scores") or {}).get(metric) is not None),
                    key=lambda r: (r["scores"][metric], str(r["id"])))
    worst = scored[:max(0, n_worst)]
    taken = {str(r["id"]) for r in worst}
    rest = sorted((r for r in rows if str(r["id"]) not in taken), key=lambda r: str(r["id"]))
    drawn = random.Random(seed).sample(rest, min(max(0, n_random), len(rest)))
    if not worst and not drawn:
        return None
    return {"metric": metric, "worst": [_item(r, metric, labels) for r in worst],
            "random": [_item(r, metric, labels) for r in drawn]}


def block(body: str | None) -> str:
    """The review block of a PR body (to its end when the end marker was cut off); '' when absent."""
    body = body or ""
    start = body.find(START)
    if start < 0:
        return ""
    end = body.find(END, start)
    return body[start:end if end >= 0 else len(body)]


def boxes(body: str | None) -> dict[str, bool]:
    """id -> ticked, for every box of the review block (the last box of an id wins)."""
    return {m["id"].strip(): m["mark"] in "xX" for m in BOX.finditer(block(body))}
