"""Conversations kept whole across the test split.

A row's session is the value of ``data.columns.session`` (in the row, its ``metadata``, its logged
``request`` or the request's ``metadata``); with no column set, the logs' own
``metadata.session_id`` (or ``conversation_id``, ``thread_id``). Rows with no session id are joined
to the row that is their earlier turns: a logged turn whose context (everything before its last user
turn) is another row's whole conversation continues that conversation.

``split`` then draws whole conversations into the test split, stratified by the category of a
conversation's first row, deterministic with the seed.
"""

from __future__ import annotations

import random
from typing import Any

from ..config import Config
from ..errors import DuoError

AUTO_KEYS = ("session_id", "conversation_id", "thread_id")


def _places(data: dict) -> list[dict]:
    request = data.get("request") if isinstance(data.get("request"), dict) else {}
    return [d for d in (data, data.get("metadata"), request, request.get("metadata")) if isinstance(d, dict)]


def session_key(cfg: Config) -> str:
    """The key read for a session id, as the manifest names it."""
    return cfg.data.columns.session or "metadata." + "|".join(AUTO_KEYS)


def session_of(data: Any, cfg: Config) -> str | None:
    """The session id of a raw row, or None."""
    if not isinstance(data, dict):
        return None
    col = cfg.data.columns.session
    places = _places(data) if col else [d for d in _places(data)[1:] if d is not data.get("request")]
    for key in [col] if col else AUTO_KEYS:
        for place in places:
            value = place.get(key)
            if value is not None and not isinstance(value, (dict, list)) and str(value).strip():
                return str(value).strip()
    return None


def _conversation(messages: list[dict]) -> tuple:
    return tuple((m["role"], m["content"]) for m in messages)


def groups(rows: list[dict]) -> dict[str, str]:
    """Each row id's conversation: its ``session`` when it has one, else the conversation of the row
    that holds its earlier turns (chained), else its own id."""
    whole = {_conversation(r["messages"]): r for r in rows}
    parent: dict[str, str] = {}

    def root(row_id: str) -> str:
        while parent.get(row_id, row_id) != row_id:
            row_id = parent[row_id]
        return row_id

    for r in rows:
        earlier = _conversation(r["messages"][:-2])
        before = whole.get(earlier) if earlier and earlier[-1][0] == "assistant" else None
        if before is not None and before is not r:
            a, b = root(r["id"]), root(before["id"])
            if a != b:
                parent[max(a, b)] = min(a, b)

    # a row's own session id names it; a chain without one is named by its first row
    named: dict[str, str] = {}
    for r in rows:
        if r.get("session"):
            named.setdefault(root(r["id"]), f"session:{r['session']}")
    return {r["id"]: f"session:{r['session']}" if r.get("session")
            else named.get(root(r["id"]), f"row:{root(r['id'])}") for r in rows}


def grouped(ids: dict[str, str]) -> bool:
    """Whether any two rows share a conversation (``ids``: :func:`groups`; else the row-by-row split
    stands as it was)."""
    return len(set(ids.values())) < len(ids)


def split(rows: list[dict], ids: dict[str, str], take: dict[str, int], seed: int, category) -> set[str]:
    """Test row ids: for each category (``category(row)``), whole conversations (``ids``: :func:`groups`)
    drawn in a seeded order while they fit its quota ``take``; then any conversation that fits what is
    left of the total. A conversation counts under its first row's category."""
    members: dict[str, list[str]] = {}
    cat_of: dict[str, str] = {}
    for r in rows:
        members.setdefault(ids[r["id"]], []).append(r["id"])
        cat_of.setdefault(ids[r["id"]], category(r))
    total, chosen, left = sum(take.values()), [], []
    for c in sorted(take):
        convs = [g for g in members if cat_of[g] == c]
        random.Random(f"{seed}:{c}").shuffle(convs)
        room = take[c]
        for g in convs:
            if len(members[g]) <= room:
                chosen.append(g)
                room -= len(members[g])
            else:
                left.append(g)
    room = total - sum(len(members[g]) for g in chosen)
    random.Random(f"{seed}:rest").shuffle(left)
    for g in left:
        if 0 < len(members[g]) <= room:
            chosen.append(g)
            room -= len(members[g])
    if not chosen:
        smallest = min(members, key=lambda g: (len(members[g]), g))
        if len(members[smallest]) >= len(rows):
            raise DuoError("data.test: every row belongs to one conversation "
                           f"({smallest}); a test split needs at least two conversations")
        chosen.append(smallest)
    return {i for g in chosen for i in members[g]}
