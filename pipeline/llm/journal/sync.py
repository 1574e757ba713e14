"""The journal in the store: where a stage's journal lives, pulled before and flushed during a stage, and the
spend ledger read from it.

A stage's journal is the folder ``journal/<stage>/round-N/`` of the store (for ``hub``: the same
path in the dataset repo) holding append-only segments ``part-<time>-<pid>-<name>.jsonl`` (see
:mod:`pipeline.llm.journal`). ``open_journal`` pulls the folder's segments first (a job on a fresh
machine re-uses every answer already paid for), registers the folder so the engine's journals write
segments there, and returns the path to give the engine; once the stage's artifact is written the
store calls ``close_journal``, which flushes it a last time.

``python -m pipeline.llm.journal.sync flush [CONFIG]`` copies every local segment the store lacks
(the composite actions run it in an ``if: always()`` step, after a cancel or a timeout too).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from pathlib import Path

from ...config import Config
from ...store import Store, round_of
from .files import SEGMENT_GLOB
from .flush import Flusher, flush_all, release, segmented
from .ledger import Ledger, read_ledger

# journal/round-N-<stage>[...].jsonl, before segments
LEGACY = re.compile(r"^round-(\d+)-([a-z]+)\b.*\.jsonl$")
log = logging.getLogger(__name__)


def journal_folder(store: Store, stage: str, round_no: int) -> Path:
    return store.journal_dir / stage / f"round-{int(round_no)}"


def open_journal(store: Store, cfg: Config, stage: str, round_no: int) -> Path:
    """The journal path for ``Engine(journal=...)`` of ``stage`` in round ``round_no``, its segments
    pulled from the store and flushed to it every ``journal.flush_s`` seconds, every
    ``journal.flush_every`` answers, when the stage's artifact is written and at exit."""
    folder = journal_folder(store, stage, round_no)
    folder.mkdir(parents=True, exist_ok=True)
    _adopt_legacy(store, stage, round_no, folder)
    store.pull_journal(folder.relative_to(store.root).as_posix() + "/")
    push = None
    if store.kind != "local":
        def push(files: dict[Path, bytes]) -> None:
            store.push_journal({p.relative_to(store.root).as_posix(): data for p, data in files.items()})
    flusher = Flusher(folder, push, cfg.journal.flush_s, cfg.journal.flush_every,
                      cfg.journal.commits_per_hour)
    flusher.seen(folder.glob(SEGMENT_GLOB))  # what the store has: pulled (hub) or the store itself (local)
    segmented(folder, flusher)
    if close_journal not in Store.after_write:
        Store.after_write.append(close_journal)
    return folder / f"{stage}.jsonl"


def close_journal(store: Store, name: str) -> None:
    """Artifact ``name`` (``round-N/<stage>``) is published: its stage's journal is flushed a last time."""
    stage, round_no = name.rsplit("/", 1)[-1], round_of(name)
    if round_no is None:
        return
    try:
        # not journal_dir: that makes the folder
        release(store.root / "journal" / stage / f"round-{round_no}")
    except Exception as err:  # noqa: BLE001 - the artifact is safe; the action's flush step tries again
        log.warning("journal of %s not flushed to the store: %s", name, err)


def _adopt_legacy(store: Store, stage: str, round_no: int, folder: Path) -> None:
    """Move journal files of the single-file layout (``journal/round-N-<stage>*.jsonl``) in as segments."""
    for path in store.journal_dir.glob(f"round-{int(round_no)}-{stage}*.jsonl"):
        m = LEGACY.match(path.name)
        if m and m.group(2) == stage:
            os.replace(path, folder / f"part-0-0-{path.stem}.jsonl")


def flush(store: Store) -> int:
    """Copy every local journal segment that the store lacks or holds shorter;
    the number of segments sent."""
    pushed = flush_all()
    if store.kind == "local":
        return pushed
    segments = sorted(p for p in store.journal_dir.rglob(SEGMENT_GLOB) if p.is_file())
    files = {p.relative_to(store.root).as_posix(): p.read_bytes() for p in segments}
    return pushed + store.push_journal(files)


def artifact_ledger(store: Store, stage: str, round_no: int) -> Ledger:
    """The spend the journal of ``round-N/<stage>`` records, every run and every segment: the
    segments pulled from the store when the stage opened its journal and those written since."""
    # not journal_dir: that makes the folder
    folder = store.root / "journal" / stage / f"round-{int(round_no)}"
    return read_ledger(sorted(folder.glob(SEGMENT_GLOB)) if folder.is_dir() else [])


def booked(usage: dict, ledger: Ledger) -> dict:
    """A manifest's ``usage`` with its artifact's ledger: ``cost_usd`` is what the journal says was
    paid plus what the requests whose reply never came cost at most (``ledger_paid_usd``,
    ``unknown_at_most_usd``), or this run's tally (carried cost included) where that is more (an
    artifact with no journal)."""
    total = ledger.cost_usd + ledger.unknown_at_most_usd
    return {**usage,
            "cost_usd": round(max(float(usage.get("cost_usd") or 0.0), total), 8),
            "ledger_paid_usd": round(ledger.cost_usd, 8),
            "unknown_at_most_usd": round(ledger.unknown_at_most_usd, 8)}


def store_ledger(store: Store) -> dict[str, Ledger]:
    """Artifact name (``round-N/<stage>``) -> the spend its journal records, every run and every segment."""
    store.pull_journal("journal/")
    files: dict[str, list[Path]] = {}
    root = store.journal_dir
    for path in root.rglob("*.jsonl"):
        rel = path.relative_to(root).parts
        if len(rel) == 3 and rel[1].startswith("round-") and rel[2].startswith("part-"):
            name = f"{rel[1]}/{rel[0]}"
        elif len(rel) == 1 and (m := LEGACY.match(rel[0])):
            name = f"round-{m.group(1)}/{m.group(2)}"
        else:
            continue
        files.setdefault(name, []).append(path)
    return {name: read_ledger(paths) for name, paths in sorted(files.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.llm.journal.sync",
                                     description="Copy the local service-LLM journal to the store.")
    parser.add_argument("verb", choices=["flush"], help="flush: copy every journal segment the store lacks.")
    parser.add_argument("config", nargs="?", default=None, help="The task's YAML config [env: DUO_CONFIG].")
    args = parser.parse_args(argv)
    from ...config import load_config
    from ...errors import DuoError
    from ...errors import report as report_error
    from ...flags import SET, fill
    from ...store import open_store

    args.set = None
    fill(args, (SET,))
    try:
        store = open_store(load_config(args.config, args.set))
        if not store.journal_dir.is_dir():
            return 0
        print(f"journal: {flush(store)} segment(s) copied to the {store.kind} store")
    except DuoError as exc:  # a ConfigError too: one line per problem
        return report_error(exc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
