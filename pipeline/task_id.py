"""``python -m pipeline.task_id CONFIG``: print the task name a config resolves to,
and write ``task=<name>`` to ``$GITHUB_OUTPUT``.

round.yml's first job runs it so every later job's concurrency group names the task, not the config
path as typed (``duo.yaml`` and ``./duo.yaml`` are one task). The config is loaded and checked as
every stage loads it, so a broken config stops the workflow here, before anything is paid for.
"""

from __future__ import annotations

import sys

from .errors import DuoError
from .errors import report as report_error
from .gha import set_output


def task_name(path: str) -> str:
    """The config's ``task.name`` (already normalised: the schema allows only ``[a-z0-9._-]``)."""
    from .config import load_config

    return load_config(path).task.name


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m pipeline.task_id CONFIG  (prints the task name; writes task=<name> to "
              "$GITHUB_OUTPUT)", file=sys.stderr)
        return 1
    try:
        name = task_name(argv[0])
    except DuoError as exc:  # a ConfigError too: one line per problem
        return report_error(exc)
    print(name)
    set_output("task", name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
