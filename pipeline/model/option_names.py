"""The option names of the installed peft ``LoraConfig`` and TRL ``SFTConfig``, without importing them on
every call.

Importing peft and TRL (and with them torch and transformers) to read two dataclasses' field names took
~6 s and ~500 MiB of ``duo validate`` (issue 24). The names are cached in a user cache folder
(``$DUO_CACHE``, else ``$XDG_CACHE_HOME/duo``, else ``~/.cache/duo``) under ``option-names/``, one file per
set of installed versions of peft, trl and transformers (``SFTConfig`` inherits transformers'
``TrainingArguments``), read with ``importlib.metadata`` (no import). A file is used only when the versions
it records are the installed ones; the first call after an install or upgrade imports the libraries once
and writes the file. A cache that cannot be read or written is skipped: the names then come from the
import, as before.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from importlib import metadata
from pathlib import Path

LIBRARIES = ("peft", "trl", "transformers")
FORMAT = 1  # bump when the file's layout changes


def cache_dir() -> Path:
    """Where duo keeps its user cache: ``$DUO_CACHE``, else ``$XDG_CACHE_HOME/duo``, else
    ``~/.cache/duo``."""
    if os.environ.get("DUO_CACHE"):
        return Path(os.environ["DUO_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "duo"
    return Path("~/.cache/duo").expanduser()


def installed_versions() -> dict[str, str | None]:
    """The installed version of each of ``LIBRARIES`` (None when it is not installed), without importing
    it."""
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cache_file(versions: dict[str, str | None]) -> Path:
    """The cache file for these versions (its name says them: two environments never overwrite each
    other's)."""
    tag = "_".join(f"{name}-{versions.get(name)}" for name in LIBRARIES)
    return cache_dir() / "option-names" / (re.sub(r"[^A-Za-z0-9._+-]", "-", tag) + ".json")


def imported_names() -> tuple[set[str], set[str]]:
    """(``LoraConfig`` field names, ``SFTConfig`` field names), from the libraries themselves (the slow
    way)."""
    from peft import LoraConfig
    from trl import SFTConfig

    return {f.name for f in dataclasses.fields(LoraConfig)}, {f.name for f in dataclasses.fields(SFTConfig)}


def _read(path: Path, versions: dict) -> tuple[set[str], set[str]] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("versions") != versions:
        return None  # another version's names (or a file from an older duo): never trusted
    lora, sft = doc.get("lora"), doc.get("sft")
    if not (isinstance(lora, list) and isinstance(sft, list) and lora and sft):
        return None
    return set(map(str, lora)), set(map(str, sft))


def _write(path: Path, versions: dict, lora: set[str], sft: set[str]) -> None:
    doc = {"format": FORMAT, "versions": versions, "lora": sorted(lora), "sft": sorted(sft)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # written aside and renamed: a reader in another process never sees half a file
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only or full disk: the next call imports again


def known_names() -> tuple[set[str], set[str]]:
    """(``LoraConfig`` option names, ``SFTConfig`` option names) of the installed peft and TRL: from the
    cache when it holds these versions' names, else imported (ImportError when they are not installed) and
    cached."""
    versions = installed_versions()
    path = cache_file(versions)
    cached = _read(path, versions) if versions["peft"] and versions["trl"] else None
    if cached is not None:
        return cached
    lora, sft = imported_names()
    _write(path, versions, lora, sft)
    return lora, sft
