"""``prepare``: the fixed train/test split of the coverage dataset (``train.jsonl``, ``test.jsonl``,
``bad_rows.jsonl``), made once per task."""

from __future__ import annotations

from .base import Artifact

# What decides which rows land where. Keys added to the data section later count only when set
# away from their defaults, so a split made before them stays valid: a split is fixed once made.
ARTIFACT = Artifact(
    "prepare",
    reads=("data.source", "data.format", "data.split", "data.columns", "data.limit", "data.test"),
    later=("data.columns.system", "data.shape", "data.on_bad_row", "data.max_row_chars",
           "data.metadata", "data.columns.session", "data.hygiene"),
    # an own refusal-pattern list decides which rows are dropped: its content counts, not only its name
    files=lambda cfg: ((cfg.resolve(cfg.data.hygiene.refusal_patterns),)
                       if cfg.data.hygiene.refusal_patterns else ()),
)
