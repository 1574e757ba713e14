"""``duo prepare``: load the coverage dataset, validate every row, make the fixed train/test split.

Rows are instruction/response columns or chat logs (``data.shape``; OpenAI chat, fine-tuning and
stored-completion JSONL, see ``chat_logs``). Output artifact ``prepare``: ``train.jsonl`` and
``test.jsonl`` (``id``, ``instruction`` (the last user turn), ``response`` (the target),
``category``, ``system`` (or null), ``messages`` (the whole chat: system, earlier turns, the last
user turn, the target), ``source_line``) and ``bad_rows.jsonl`` (``line``, ``kind``, ``reason``,
``row``). The split is made once: every later round is measured on the same test prompts, so
remaking it needs ``--force``. A repeated instruction is reported as a ``duplicate`` and skipped in
either ``on_bad_row`` mode (logs repeat prompts; a repeat must not land on both sides of the split);
an ``invalid`` row is skipped or stops the run.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter, defaultdict

from ..artifacts import ARTIFACTS, StageInputs
from ..config import Config
from ..data import hygiene, sessions
from ..data.dedup import NearDupIndex
from ..data.rows import enough_rows, holdout_count, read_rows
from ..data.sources import fingerprint, load_source
from ..errors import DuoError
from ..flags import WITHOUT_ROUND
from ..manifest import Manifest
from ..records import write_jsonl
from ..stats.task_kind import prepare_kind
from ..store import Store, open_store
from .common import publish

ARTIFACT = "prepare"
FLAGS = WITHOUT_ROUND
NO_CATEGORY = "(none)"  # manifest key for rows without a category
NEAR_THRESHOLD = 0.8  # word-shingle Jaccard at which a test prompt counts as a near copy of a train prompt


def split(rows: list[dict], size: float, seed: int, duplicates: int = 0,
          conversations: dict[str, str] | None = None) -> tuple[list[dict], list[dict]]:
    """Deterministic train/test split, stratified by ``category`` (largest-remainder
    allocation per category); ``duplicates`` left out of ``rows`` only explain an error. Rows of
    one conversation (``conversations``, else ``sessions.groups(rows)``) go to the same side."""
    conversations = sessions.groups(rows) if conversations is None else conversations
    k = holdout_count(len(rows), size, duplicates)
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["category"] or NO_CATEGORY].append(r)
    quotas = {c: k * len(g) / len(rows) for c, g in groups.items()}
    take = {c: int(q) for c, q in quotas.items()}
    by_remainder = sorted(groups, key=lambda c: (-(quotas[c] - take[c]), c))
    for c in by_remainder[: k - sum(take.values())]:
        take[c] += 1
    if sessions.grouped(conversations):
        test_ids = sessions.split(rows, conversations, take, seed, lambda r: r["category"] or NO_CATEGORY)
        return [r for r in rows if r["id"] not in test_ids], [r for r in rows if r["id"] in test_ids]
    test_ids = set()
    for c in sorted(groups):
        ids = [r["id"] for r in groups[c]]
        random.Random(f"{seed}:{c}").shuffle(ids)  # a str seed is hashed stably across processes
        test_ids.update(ids[: take[c]])
    return [r for r in rows if r["id"] not in test_ids], [r for r in rows if r["id"] in test_ids]


def near_train(train: list[dict], test: list[dict], threshold: float = NEAR_THRESHOLD) -> list[str]:
    """Ids of test rows whose instruction is a near-duplicate of a train instruction
    (templated prompts): scores on them say less about generalisation. Reported, not moved:
    the split stays as drawn."""
    index = NearDupIndex(threshold)
    index.add_many((r["id"], r["instruction"]) for r in train)
    return [r["id"] for r in test if index.match(r["instruction"]) is not None]


def _same_split(old: Manifest, cfg: Config, ins: StageInputs) -> bool:
    """True when the stored split was made from these inputs; an artifact from before fingerprints (duo 0.1's
    first manifests) counts as the same when its source content, test size and seed are."""
    if old.fingerprint is not None:
        return old.fingerprint == ins.fingerprint
    x = old.extra or {}
    return (x.get("source_sha256"), x.get("test_size"), x.get("test_seed")) == (
        ins.values["source_sha256"], cfg.data.test.size, cfg.data.test.seed)


def run(cfg: Config, store: Store, round_no: int | None = None, *, force: bool = False) -> Manifest:
    """Make (or return the existing) ``prepare`` artifact. ``round_no`` is ignored: the
    split serves all rounds."""
    ins = ARTIFACTS[ARTIFACT].inputs(cfg, store, None, source_sha256=fingerprint(cfg))
    if store.exists(ARTIFACT) and not force:
        old = store.manifest(ARTIFACT)
        if _same_split(old, cfg, ins):
            return old
        if (old.extra or {}).get("source_sha256") != ins.values["source_sha256"]:
            changed = f"the content of {cfg.data.source}"
        else:
            changed = "the data config (source, columns, limit, test split)"
        raise DuoError(f"prepare: the train/test split is fixed once made, but {changed} changed "
                       "since it was made; rerun with --force to remake it "
                       "(earlier rounds' results then become incomparable with later ones)")
    src = load_source(cfg)
    rows, bad = read_rows(cfg, src)
    enough_rows(src, rows, bad)
    duplicates = sum(1 for b in bad if b["kind"] == "duplicate")
    conversations = sessions.groups(rows)
    train, test = split(rows, cfg.data.test.size, cfg.data.test.seed, duplicates, conversations)
    manifest = ins.start()
    kinds = Counter(b["kind"] for b in bad)
    manifest.counts = {"rows": len(src.rows), "valid": len(rows), "train": len(train), "test": len(test),
                       "bad": kinds["invalid"], "duplicates": kinds["duplicate"],
                       "dropped": hygiene.counts(bad),
                       "sessions": len(set(conversations.values())),
                       "with_system": sum(1 for r in rows if r["system"]),
                       "multi_turn": sum(1 for r in rows if len(r["messages"]) > (3 if r["system"] else 2))}
    if cfg.data.columns.category:
        by_cat: dict[str, dict] = defaultdict(lambda: {"train": 0, "test": 0})
        for part, part_rows in (("train", train), ("test", test)):
            for r in part_rows:
                by_cat[r["category"] or NO_CATEGORY][part] += 1
        manifest.counts["by_category"] = dict(sorted(by_cat.items()))
    near = near_train(train, test)
    manifest.extra = {
        "source": src.location if src.format == "hub" else cfg.data.source,
        "format": src.format,
        "source_sha256": src.fingerprint,
        "test_size": cfg.data.test.size,
        "test_seed": cfg.data.test.seed,
        "test_near_train": len(near),
        "test_near_train_ids": near[:50],
        "near_threshold": NEAR_THRESHOLD,
        "hygiene": hygiene.settings(cfg),
        "split_by": "conversation" if sessions.grouped(conversations) else "row",
        "session_key": sessions.session_key(cfg),
    }
    manifest.extra.update(prepare_kind(rows, train))  # the task kind the targets show (docs/structured.md)
    with store.write(ARTIFACT) as folder:
        write_jsonl(folder / "train.jsonl", train)
        write_jsonl(folder / "test.jsonl", test)
        write_jsonl(folder / "bad_rows.jsonl", bad)
        manifest.finish(folder).write(folder)
    return manifest


def command(cfg: Config, args: argparse.Namespace) -> int:
    store = open_store(cfg)
    m = run(cfg, store, force=args.force)
    c = m.counts
    print(f"prepare: {c['rows']} rows -> {c['train']} train / {c['test']} test "
          f"({c['bad']} bad, {c['duplicates']} duplicate; reasons in bad_rows.jsonl)")
    if any((c.get("dropped") or {}).values()):
        print("  dropped (data.hygiene): " + ", ".join(f"{n} {r}" for r, n in c["dropped"].items() if n))
    if m.extra.get("split_by") == "conversation":
        print(f"  split by conversation: {c['sessions']} conversations, none on both sides")
    if c.get("with_system") or c.get("multi_turn"):
        print(f"  {c.get('with_system', 0)} rows with a system prompt, {c.get('multi_turn', 0)} multi-turn "
              f"(earlier turns kept as context)")
    if m.extra.get("kind") not in (None, "text"):
        print(f"  task kind: {m.extra['kind']} ({m.extra.get('kind_reason')})")
    for cat, n in c.get("by_category", {}).items():
        print(f"  {cat}: {n['train']} train / {n['test']} test")
    if m.extra.get("test_near_train"):
        examples = ", ".join(m.extra["test_near_train_ids"][:3])
        print(f"  note: {m.extra['test_near_train']} test prompt(s) are near copies of train prompts "
              f"(word Jaccard >= {m.extra['near_threshold']}), e.g. {examples}")
    summary = (f"  {c['train']} train / {c['test']} test rows from {c['rows']} "
               f"({c['bad']} bad, {c['duplicates']} duplicate)")
    publish(store, ARTIFACT, summary, title="prepare")
    return 0
