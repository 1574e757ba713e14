"""``/duo label ID good|bad [reason]`` lines in a PR comment, review or review comment.

Each line of a message that starts with ``/duo label`` is one command; a line that starts so but does
not read ``/duo label ID good|bad [reason]`` is an error the caller reports (and skips), naming the
message. The id may be written in backticks, as the review block shows it.
"""

from __future__ import annotations

import re

from ..artifacts.feedback import VALUES

LINE = re.compile(r"^[ \t>]*/duo[ \t]+label\b(?P<rest>[^\n]*)$", re.IGNORECASE | re.MULTILINE)
ARGS = re.compile(r"^\s*`?(?P<id>[^\s`]+)`?(?:\s+(?P<label>\S+))?(?:\s+(?P<reason>.*?))?\s*$")
USAGE = "expected '/duo label ID good|bad [reason]'"


def parse_commands(text: str | None) -> list[tuple[dict | None, str | None]]:
    """One ``(command, None)`` or ``(None, error)`` per ``/duo label`` line of ``text``; a command is
    ``{id, label, reason}``."""
    out: list[tuple[dict | None, str | None]] = []
    for match in LINE.finditer(text or ""):
        line = f"/duo label{match['rest']}".strip()
        args = ARGS.match(match["rest"])
        if args is None or not args["label"]:
            out.append((None, f"'{line}': {USAGE}"))
            continue
        label = args["label"].lower()
        if label not in VALUES:
            out.append((None, f"'{line}': label '{args['label']}' is not good or bad"))
            continue
        out.append(({"id": args["id"], "label": label, "reason": args["reason"] or None}, None))
    return out
