"""``duo feedback``: people's labels of round N's answers, stored as artifact ``round-N/feedback``.

From the report PR (through PyGithub): the ticked ``acceptable`` boxes of the PR body's review block
(``good``) and every ``/duo label ID good|bad [reason]`` line of its comments, reviews and review
comments (``pipeline.feedback.collect`` states the rules). With ``--import labels.csv``: labels
exported from an annotation tool (columns id,label[,reason,who,when]); GitHub is not read then.

Each run rewrites ``labels.jsonl`` (who, when, id, label, reason, source): the PR's labels as they
are now, plus every label imported before (an import adds to the PR's labels and earlier imports).
A ``/duo label`` line naming an unknown id or a label other than good/bad is skipped, reported on
one line naming the comment and kept in ``skipped.jsonl``; a bad CSV row stops the import with one
line naming the row, and nothing already stored is lost.
"""

from __future__ import annotations

import argparse
import sys

from ..artifacts.feedback import ARTIFACT, LABELS, SKIPPED, read_labels
from ..config import Config
from ..errors import DuoError
from ..feedback.collect import from_body, from_messages, known_ids
from ..feedback.imports import read_csv
from ..flags import SET, Flag, round_number
from ..manifest import Manifest, zero_usage
from ..records import write_jsonl
from ..store import Store, latest_round, open_store
from .common import publish

STAGE = "feedback"
FLAGS = (
    SET,
    Flag("--round", "Round whose answers are labelled; unset: the round of --pr, else the latest evaluated.",
         type=round_number, metavar="N"),
    Flag("--pr", "Number of the report pull request; unset: the PR from branch duo/<task>/round-<N>.",
         type=int, metavar="NUMBER"),
    Flag("--import", "CSV file of labels from an annotation tool (columns id,label[,reason,who,when]); "
         "GitHub is not read.", metavar="CSV"),
    Flag("--actor", "Who edited the PR body (the workflow passes the event's sender); "
         "credited with new ticks."),
)


def store_labels(store: Store, round_no: int, ins, labels: list[dict], skipped: list[dict], extra: dict
                 ) -> Manifest:
    """Write ``round-N/feedback`` with ``labels`` and ``skipped``, counted in its manifest."""
    manifest = ins.start()
    with store.write(ins.name) as folder:
        write_jsonl(folder / LABELS, labels)
        write_jsonl(folder / SKIPPED, skipped)
        manifest.counts = {"labels": len(labels),
                           "good": sum(1 for r in labels if r["label"] == "good"),
                           "bad": sum(1 for r in labels if r["label"] == "bad"),
                           "skipped": len(skipped),
                           **{f"from_{s}": sum(1 for r in labels if r["source"] == s)
                              for s in ("pr_body", "comment", "import")}}
        manifest.usage = zero_usage()
        manifest.extra = extra
        manifest.finish(folder).write(folder)
    return manifest


def from_pr(cfg: Config, store: Store, round_no: int | None, number: int | None, actor: str | None
            ) -> tuple[int, list[dict], list[dict], dict]:
    """(round, labels, skipped, extra) read from the report PR."""
    from .. import github
    from ..feedback.pull_request import messages, pr_round, report_pr, stamp

    repo = github.connect()
    pr = report_pr(repo, cfg.task.name, round_no, number)
    found = pr_round(pr, cfg.task.name)
    if round_no is not None and found != round_no:
        raise DuoError(f"pull request #{pr.number} reports round {found}, not round {round_no}")
    known = known_ids(store, found)
    if not known:
        raise DuoError(f"round {found} has no scored test answers nor synthetic rows in the store: "
                       "nothing to label (run duo evaluate first)")
    previous = read_labels(store, found)
    labels, skipped = from_body(pr.body, stamp(pr.updated_at), actor, known, found, previous)
    said, bad = from_messages(messages(pr), known, found)
    imported = [r for r in previous if r.get("source") == "import"]
    return found, imported + labels + said, skipped + bad, {"pr": pr.number, "pr_url": pr.html_url}


def command(cfg: Config, args: argparse.Namespace) -> int:
    store = open_store(cfg)
    round_no = getattr(args, "round", None)
    csv_path = getattr(args, "import", None)
    if csv_path:
        round_no = round_no if round_no is not None else latest_round(store, "evaluate") or 1
        known = known_ids(store, round_no)
        new = read_csv(csv_path, known, round_no)
        labels, skipped, extra = read_labels(store, round_no) + new, [], {"imported": str(csv_path)}
        where = f"{len(new)} imported from {csv_path}"
    else:
        if round_no is None and args.pr is None:
            round_no = latest_round(store, "evaluate") or 1
        round_no, labels, skipped, extra = from_pr(cfg, store, round_no, args.pr, args.actor)
        where = f"from pull request #{extra['pr']}"
    m = store_labels(store, round_no, ARTIFACT.inputs(cfg, store, round_no), labels, skipped, extra)
    for s in skipped:
        who = f" by {s['who']}" if s.get("who") else ""
        print(f"warning: skipped {s['where']}{who}: {s['error']}", file=sys.stderr)
    c = m.counts
    publish(store, m.artifact,
            f"feedback round {round_no}: {c['labels']} labels ({c['good']} good, {c['bad']} bad) {where}"
            + (f"; {c['skipped']} skipped" if c["skipped"] else ""),
            title=f"duo feedback, round {round_no}", labels=c["labels"], skipped=c["skipped"])
    return 0
