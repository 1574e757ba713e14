"""Command-line flags that a stage declares for itself, each with an
environment-variable fallback (as cml does).

A composite action therefore runs ``duo <verb>`` with everything in ``env:`` and no
argument-building shell. A flag given on the command line wins over its variable; an empty
variable counts as unset.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass

from .errors import DuoError

TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Flag:
    """One option: ``--samples`` with type ``int`` falls back to ``$DUO_SAMPLES``.

    ``kind`` is ``value`` (one value of ``type``), ``switch`` (store_true) or ``list`` (repeatable;
    the variable holds one value per line).
    """

    name: str
    help: str
    type: Callable = str
    kind: str = "value"
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_")

    @property
    def env(self) -> str:
        return "DUO_" + self.dest.upper()

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        help_text = f"{self.help} [env: {self.env}]"
        if self.kind == "switch":
            parser.add_argument(self.name, action="store_true", default=None, help=help_text)
        elif self.kind == "list":
            parser.add_argument(self.name, dest=self.dest, action="append", default=None, type=self.type,
                                metavar=self.metavar, help=help_text)
        else:
            parser.add_argument(self.name, dest=self.dest, type=self.type, default=None,
                                metavar=self.metavar, help=help_text)

    def fill(self, args: argparse.Namespace) -> None:
        """Take the value from the environment when the command line left it unset."""
        if getattr(args, self.dest, None) not in (None, []):
            return
        raw = os.environ.get(self.env, "")
        if self.kind == "switch":
            setattr(args, self.dest, raw.strip().lower() in TRUE)
        elif self.kind == "list":
            setattr(args, self.dest, [self._convert(v) for v in raw.splitlines() if v.strip()])
        else:
            setattr(args, self.dest, self._convert(raw) if raw.strip() else None)

    def _convert(self, raw: str):
        try:
            return self.type(raw.strip())
        except argparse.ArgumentTypeError as exc:
            reason = str(exc).split(": ", 1)[-1]
            raise DuoError(f"{self.env}={raw.strip()!r}: {reason} for {self.name}") from None
        except (TypeError, ValueError):
            raise DuoError(f"{self.env}={raw!r}: expected {getattr(self.type, '__name__', 'a value')} "
                           f"for {self.name}") from None


class RoundValueError(argparse.ArgumentTypeError, ValueError):
    """A ``--round`` that is neither a round number nor ``latest``: argparse prints the message as it is."""


def one_of(*values: str):
    """An argparse ``type`` taking only one of ``values`` (``--to``, ``--gateway``, ``--engine``)."""

    def choice(text: str) -> str:
        if text not in values:
            raise argparse.ArgumentTypeError(f"{text!r}: expected one of {', '.join(values)}")
        return text

    return choice


def round_number(text: str) -> int | None:
    """``--round``: 0 is the untuned baseline, 1.. are training rounds, ``latest``
    (None) the latest round."""
    text = str(text).strip()
    if text.lower() == "latest":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise RoundValueError(f"{text!r}: expected a round number N >= 0 "
                              "(0 = the untuned baseline) or 'latest'")
    return value


SET = Flag("--set",
           "Override one config value (YAML syntax); repeatable; the variable holds one per line.",
           kind="list",
           metavar="SECTION.KEY=VALUE")
ROUND = Flag("--round",
             "Round number (0 = the untuned baseline) or 'latest' "
             "(the default: the latest round with artifacts, or 1).",
             type=round_number,
             metavar="N")
FORCE = Flag("--force", "Redo the stage even when its artifact is complete.", kind="switch")
COMMON = (SET, ROUND, FORCE)
WITHOUT_ROUND = (SET, FORCE)


def add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", default=None,
                        help="Path to the task's YAML config [env: DUO_CONFIG; default duo.yaml].")


def fill(args: argparse.Namespace, flags: tuple[Flag, ...]) -> argparse.Namespace:
    """Fill every unset flag (and the config path) from the environment."""
    if not getattr(args, "config", None):
        args.config = os.environ.get("DUO_CONFIG", "").strip() or "duo.yaml"
    for flag in flags:
        flag.fill(args)
    return args
