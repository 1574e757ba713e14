"""Captured gateway traffic: the lines the gateway's logging hook appends (docs/rollout.md).

Folder ``rollout.traffic`` (default ``<local store>/traffic``), files
``<YYYY-MM-DD>/<gateway>-<host>-<pid>.jsonl``, one JSON object a line: ``{"request": {model, messages, ...},
"response": <chat.completion> | null, "duo": {id, group, role: served | shadow, deployment: student | service,
model, gateway, ts, latency_s, error, fallback, usage}}``. The ``request``/``response`` pair is the
logged-request shape ``chat_logs`` reads, so only the reading of the ``duo`` part lives here:
:func:`read_calls` (a window of calls, for ``duo canary`` and ``duo monitor``) and :func:`teacher_rows` (the
service's answers as data rows, for ``data.source``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import DuoError

ROLES = ("served", "shadow")
DEPLOYMENTS = ("student", "service")


@dataclass(frozen=True)
class Call:
    """One captured request/response of one deployment (``where``: ``file:line``)."""

    id: str
    group: str
    role: str
    deployment: str
    model: str
    ts: datetime
    latency_s: float | None
    error: str | None
    fallback: bool
    usage: dict | None
    request: dict
    response: dict | None
    where: str
    gateway: str = ""

    @property
    def answer(self) -> str | None:
        """The reply's text (``choices[0].message.content``), or None on an error or a reply without text."""
        choices = (self.response or {}).get("choices") if isinstance(self.response, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return None
        content = (choices[0].get("message") or {}).get("content")
        return content if isinstance(content, str) and content.strip() else None

    @property
    def ok(self) -> bool:
        return self.error is None and self.answer is not None


@dataclass
class Traffic:
    """The calls read from a folder, and the lines that could not be read (``where: why``)."""

    folder: Path
    calls: list[Call] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def groups(self) -> dict[str, list[Call]]:
        """Calls by ``group``: a served answer and its shadow copy share one."""
        out: dict[str, list[Call]] = {}
        for c in self.calls:
            out.setdefault(c.group, []).append(c)
        return out


def traffic_files(folder: Path) -> list[Path]:
    """The capture files under ``folder`` (``<day>/<name>.jsonl``, also ``*.jsonl`` at the top), sorted."""
    if not folder.is_dir():
        raise DuoError(f"traffic folder {folder} does not exist; point rollout.traffic (or --traffic) at the "
                       "folder the gateway's logging hook writes (docs/rollout.md)")
    return sorted({*folder.glob("*.jsonl"), *folder.glob("*/*.jsonl")})


def parse_ts(text: str) -> datetime:
    """An ISO-8601 time (``Z`` accepted); a naive one is taken as UTC."""
    ts = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def _call(data: object, where: str) -> tuple[Call | None, str | None]:
    if not isinstance(data, dict) or not isinstance(data.get("duo"), dict):
        return None, "not a captured call (no 'duo' object)"
    d = data["duo"]
    if d.get("role") not in ROLES or d.get("deployment") not in DEPLOYMENTS:
        return None, (f"duo.role {d.get('role')!r} / duo.deployment {d.get('deployment')!r}; expected "
                      "served|shadow and student|service")
    if not isinstance(data.get("request"), dict):
        return None, "'request' is not an object"
    try:
        ts = parse_ts(d["ts"])
    except (KeyError, TypeError, ValueError):
        return None, f"duo.ts {d.get('ts')!r} is not an ISO-8601 time"
    latency = d.get("latency_s")
    response = data.get("response") if isinstance(data.get("response"), dict) else None
    return Call(id=str(d.get("id") or where), group=str(d.get("group") or d.get("id") or where),
                role=d["role"], deployment=d["deployment"],
                model=str(d.get("model") or data["request"].get("model") or ""),
                ts=ts, latency_s=float(latency) if isinstance(latency, (int, float)) else None,
                error=(str(d["error"]) if d.get("error") else None), fallback=bool(d.get("fallback")),
                usage=d.get("usage") if isinstance(d.get("usage"), dict) else None,
                request=data["request"], response=response, where=where,
                gateway=str(d.get("gateway") or "")), None


def _entries(folder: Path) -> Iterator[tuple[Path, int, object, Call | None, str | None]]:
    """``(path, line number, data, call, why)`` of each non-blank line of the capture files: ``data`` is
    the parsed object (the line itself when it is not JSON); ``call`` is None when the line is not a call,
    ``why`` says why."""
    for path in traffic_files(folder):
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:  # a line cut by a killed writer
                    yield path, lineno, line.rstrip("\n"), None, f"not valid JSON ({exc.msg})"
                    continue
                yield path, lineno, data, *_call(data, f"{path}:{lineno}")


def read_calls(folder: Path, since: datetime | None = None, until: datetime | None = None) -> Traffic:
    """Every call under ``folder`` whose start lies in [``since``, ``until``] (None: unbounded)."""
    found = Traffic(Path(folder))
    for path, lineno, _, call, why in _entries(Path(folder)):
        if call is None:
            found.problems.append(f"{path}:{lineno}: {why}")
        elif (since is None or call.ts >= since) and (until is None or call.ts <= until):
            found.calls.append(call)
    found.calls.sort(key=lambda c: (c.ts, c.id))
    return found


def folder_digest(folder: Path) -> str:
    """sha256 over the capture files' names and bytes: tells whether the captured data changed."""
    h = hashlib.sha256()
    for path in traffic_files(folder):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def teacher_rows(folder: Path) -> Iterator[tuple[int, dict | str, str | None]]:
    """``(number, row, error)`` of the service's answers (``deployment: service``, no error) as logged-request
    rows ``{"request", "response"}`` (system prompts and earlier turns kept); the student's answers and failed
    calls are not teacher answers and are skipped. A line that cannot be read comes back with its error."""
    number = 0
    for path, lineno, data, call, why in _entries(folder):
        if call is None:
            number += 1
            yield number, data, f"{path.name}:{lineno}: {why}"
        elif call.deployment == "service" and call.ok:
            number += 1
            yield number, {"request": call.request, "response": call.response}, None
