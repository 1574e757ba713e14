"""A seed drawer that prefers some rows: ``share`` of the draws take one of ``preferred`` (the canary's
losses, the answers reviewers marked bad), the others draw from the drawer it wraps. Each draw is
seeded by (its tag, seed, round, attempt, index), so a rerun draws the same seeds."""

from __future__ import annotations

import random


class Prefer:
    def __init__(self, base, preferred: list[dict], seed: int, *, share: float, tag: str):
        self.base, self.preferred, self.seed, self.share, self.tag = base, preferred, seed, share, tag

    def __getattr__(self, name):  # the base drawer's other attributes (train, weights, ...)
        return getattr(self.base, name)

    def draw(self, round_no: int, attempt: int, i: int) -> dict:
        rng = random.Random(f"{self.tag}:{self.seed}:{round_no}:{attempt}:{i}")
        if rng.random() < self.share:
            return self.preferred[rng.randrange(len(self.preferred))]
        return self.base.draw(round_no, attempt, i)
