"""Labels from what people wrote on a report PR, and the ids a label may name.

Rules (docs/feedback.md):

- a ticked ``acceptable`` box of the review block is a ``good`` label. An unticked box is no label:
  GitHub keeps no history of a PR body's edits, so a box nobody looked at cannot be told from one a
  reviewer left unticked on purpose; ``bad`` is said with ``/duo label ID bad [reason]``. A box
  ticked before keeps its first ``who`` and ``when``; a new tick is dated by the PR's last update
  and credited to ``actor`` (the workflow passes whoever edited the body), else ``pr-body``. A box
  unticked again withdraws its ``good`` label.
- each ``/duo label ID good|bad [reason]`` line of an issue comment, review or review comment is a
  label by the comment's author, dated by its last edit.
- only people who can write to the repository label: a command by an author whose GitHub
  ``author_association`` is not OWNER, MEMBER or COLLABORATOR is skipped (anyone may comment on a
  public repository's PR).
- a command naming an id that is neither a test prompt of the round nor a synthetic row of a round
  up to it, or with a label other than good/bad, is skipped and reported (one line naming the
  comment); it never stops the others.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..artifacts.evaluate import read_scores
from ..records import read_jsonl
from ..store import Store, artifact_name
from .commands import parse_commands
from .review import boxes

BODY_WHO = "pr-body"
TRUSTED = ("OWNER", "MEMBER", "COLLABORATOR")


@dataclass(frozen=True)
class Message:
    """A comment, review or review comment: its author, last-edit time, text, where to find it and the
    author's relation to the repository (GitHub's ``author_association``)."""

    who: str
    when: str
    body: str
    where: str
    association: str = "OWNER"


def known_ids(store: Store, round_no: int) -> dict[str, str]:
    """id -> ``test`` (round ``round_no``'s scored test prompts) or ``synthetic`` (rows kept by the
    synthesis of rounds 1..``round_no``)."""
    out: dict[str, str] = {}
    for k in range(1, int(round_no) + 1):
        name = artifact_name("synthesize", k)
        if store.exists(name) and (store.open(name) / "data.jsonl").is_file():
            out.update({str(r["id"]): "synthetic" for r in read_jsonl(store.open(name) / "data.jsonl")
                        if r.get("id") is not None})
    out.update({str(r["id"]): "test" for r in read_scores(store, round_no) or [] if r.get("id") is not None})
    return out


def unknown(item_id: str, known: dict, round_no: int) -> str:
    return (f"unknown id '{item_id}' (neither a test prompt of round {round_no} "
            f"nor a synthetic row of rounds 1-{round_no})")


def from_body(body: str | None, when: str, actor: str | None, known: dict, round_no: int,
              previous: list[dict]) -> tuple[list[dict], list[dict]]:
    """(labels, skipped) from the ticked boxes of the PR body's review block."""
    before = {str(p["id"]): p for p in previous if p.get("source") == "pr_body" and p.get("label") == "good"}
    labels, skipped = [], []
    for item_id, ticked in boxes(body).items():
        if not ticked:
            continue
        if item_id not in known:
            skipped.append({"id": item_id, "where": "PR body", "error": unknown(item_id, known, round_no)})
            continue
        old = before.get(item_id) or {}
        who = old.get("who") or actor or BODY_WHO
        labels.append({"id": item_id, "label": "good", "reason": None, "who": who,
                       "when": old.get("when") or when, "source": "pr_body", "kind": known[item_id]})
    return labels, skipped


def from_messages(messages: list[Message], known: dict, round_no: int) -> tuple[list[dict], list[dict]]:
    """(labels, skipped) from the ``/duo label`` lines of comments, reviews and review comments."""
    labels, skipped = [], []
    for msg in messages:
        for command, error in parse_commands(msg.body):
            if command is not None and command["id"] not in known:
                error = unknown(command["id"], known, round_no)
            if error is None and msg.association not in TRUSTED:
                error = (f"{msg.who} is not a member or collaborator of the repository "
                         f"(author association {msg.association}): not counted")
            if error is not None:
                skipped.append({"who": msg.who, "when": msg.when, "where": msg.where, "error": error})
                continue
            labels.append({**command, "who": msg.who, "when": msg.when, "source": "comment",
                           "kind": known[command["id"]], "where": msg.where})
    return labels, skipped
