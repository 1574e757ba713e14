"""``duo validate``: the config was already loaded and checked by the CLI; say so and summarise it."""

from __future__ import annotations

import argparse

from .config import Config


def command(cfg: Config, args: argparse.Namespace) -> int:
    svc = cfg.service
    print(f"{cfg.source_path}: ok (task {cfg.task.name}, student {cfg.student.model}, store {cfg.store.kind})")
    for role in ("synthesize", "judge"):
        s = getattr(svc, role)
        print(f"  service.{role}: " + (f"{s.provider}:{s.model}" if s else "none (offline)"))
    return 0
