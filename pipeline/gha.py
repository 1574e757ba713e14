"""GitHub Actions plumbing: step outputs and the job summary,
written only when Actions provides the files."""

from __future__ import annotations

import os
import uuid


def set_output(name: str, value: object) -> None:
    """Append ``name=value`` to ``$GITHUB_OUTPUT`` (multi-line values use a random delimiter)."""
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        return
    text = str(value)
    with open(path, "a", encoding="utf-8") as fh:
        if "\n" in text:
            delim = f"EOF_{uuid.uuid4().hex}"
            fh.write(f"{name}<<{delim}\n{text}\n{delim}\n")
        else:
            fh.write(f"{name}={text}\n")


def step_summary(markdown: str) -> None:
    """Append markdown to ``$GITHUB_STEP_SUMMARY`` when set."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(markdown.rstrip() + "\n\n")
