"""``duo unlock``: say who holds the task's lock, and remove it when its holder is gone.

The lock (``.locks/<task>.json`` in a local store, ``locks/<task>.json`` in the Hub dataset repo)
names its holder, when it was taken and last renewed, and when it expires. A lock whose expiry
has passed, or whose pid is dead on this host, is stale and removed (in the hub store by a commit
deleting it). A live one (renewed within its expiry) is refused unless ``--force``. One line says
what was done; exit 0, also when no lock is held. Not a writer: it takes no lock itself.
"""

from __future__ import annotations

import argparse

from ..config import Config
from ..errors import DuoError
from ..flags import SET, Flag
from ..store import open_store
from ..store.lock import inspect, is_stale, remove
from ..store.lock_record import age_s, span

FLAGS = (
    SET,
    Flag("--force", "Remove the lock even while its holder still renews it; only when you know that "
                    "job is gone (a holder that still runs then writes without the lock).", kind="switch"),
)


def describe(record: dict) -> str:
    """``OWNER, taken 4 min 2 s ago, last renewed 12 s ago, expires T``."""
    if not record:
        return "a garbled lock"
    return (f"{record.get('owner', 'an unknown process')}, taken {span(age_s(record))} ago, "
            f"last renewed {span(age_s(record, 'renewed'))} ago, expires {record.get('expires', '?')}")


def command(cfg: Config, args: argparse.Namespace) -> int:
    task = cfg.task.name
    backend, record = inspect(open_store(cfg), task)
    if record is None:
        print(f"unlock {task}: no lock held ({backend.where})")
        return 0
    stale = is_stale(record)
    if not stale and not args.force:
        raise DuoError(f"task {task}'s lock is live: {describe(record)} ({backend.where}); "
                       "stop that job, or pass --force if you know it is gone")
    if not remove(backend, record):
        raise DuoError(f"the lock of task {task} was taken again while unlocking ({backend.where}); "
                       "run duo unlock again to see by whom")
    how = "stale lock" if stale else "live lock (--force)"
    print(f"unlock {task}: removed the {how} of {describe(record)} ({backend.where})")
    return 0
