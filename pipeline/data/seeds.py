"""The seeds of a synthesis round and the shape they set: which train rows are drawn, their system
prompt, and the range of response lengths synthetic pairs must fall in.

Seeds come only from ``prepare``'s train split, never the test split.
``synthesize.targeting: uniform`` draws every train row alike (LlamaDuo); ``weakest`` reads the
per-prompt scores of the last evaluated round before this one (``artifacts.evaluate.read_scores``)
and draws a category with probability mixing its gap to the best category's mean score
(``1 - UNIFORM_SHARE``) with its share of the train rows (``UNIFORM_SHARE``, so no category is
starved), then a row of that category. A draw depends only on (config seed, round, attempt, index),
so a rerun asks the same requests.
"""

from __future__ import annotations

import bisect
import random
from collections import defaultdict

import numpy as np

from ..artifacts.evaluate import read_metrics, read_scores
from ..artifacts.synthesize import scores_round
from ..store import Store
from . import seeds_canary, seeds_feedback

UNIFORM_SHARE = 0.2  # of the draws under ``weakest`` spread like the train split itself


def system_of(row: dict) -> str | None:
    """A row's system prompt: its ``system`` field, else a leading system turn of its ``messages``."""
    if row.get("system"):
        return str(row["system"])
    messages = row.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[0], dict) \
            and messages[0].get("role") == "system":
        return str(messages[0].get("content") or "") or None
    return None


def length_band(train: list[dict], lf) -> dict | None:
    """The seeds' response lengths in characters: ``typical`` [q(low_q), q(high_q)] (told to the service) and
    ``allowed`` [typical low / slack, typical high x slack] (the length filter); None without train rows."""
    lengths = [len(str(r.get("response") or "")) for r in train]
    if not lengths:
        return None
    low, high = (float(q) for q in np.quantile(lengths, [lf.low_q, lf.high_q]))  # linear interpolation
    return {
        "typical": [round(low), round(high)],
        "allowed": [int(low / lf.slack), int(high * lf.slack + 0.999)],
        "filter": bool(lf.enabled),
    }


def category_means(rows: list[dict], metric: str | None) -> dict:
    """Mean score per category over rows scored on ``metric`` (the first metric of a row when None)."""
    sums: dict = defaultdict(lambda: [0.0, 0])
    for row in rows:
        scores = row.get("scores") or {}
        key = metric if metric in scores else next(iter(scores), None)
        value = scores.get(key) if key else None
        if isinstance(value, (int, float)):
            sums[row.get("category")][0] += float(value)
            sums[row.get("category")][1] += 1
    return {c: s / n for c, (s, n) in sums.items() if n}


def weakest_weights(train: list[dict], means: dict) -> dict:
    """Draw probability per train category: the gap to the best category's mean, mixed
    with the train share."""
    counts: dict = defaultdict(int)
    for row in train:
        counts[row.get("category")] += 1
    best = max(means.values()) if means else 0.0
    gaps = {c: max(0.0, best - means[c]) if c in means else 0.0 for c in counts}
    total_gap, n = sum(gaps.values()), len(train)
    if total_gap <= 0:
        return {c: k / n for c, k in counts.items()}
    return {c: (1 - UNIFORM_SHARE) * gaps[c] / total_gap + UNIFORM_SHARE * counts[c] / n for c in counts}


class Seeds:
    """Draws seed rows from the train split: uniformly, or by category ``weights``."""

    def __init__(self, train: list[dict], seed: int, weights: dict | None = None):
        self.train, self.seed, self.weights = train, seed, weights
        self.by_category: dict = defaultdict(list)
        for row in train:
            self.by_category[row.get("category")].append(row)
        if weights:
            self.categories = [c for c in weights if weights[c] > 0 and self.by_category.get(c)]
            total = sum(weights[c] for c in self.categories)
            acc, self.cumulative = 0.0, []
            for c in self.categories:
                acc += weights[c] / total
                self.cumulative.append(acc)

    def draw(self, round_no: int, attempt: int, i: int) -> dict:
        rng = random.Random(f"{self.seed}:{round_no}:{attempt}:{i}")
        if not self.weights:
            return self.train[rng.randrange(len(self.train))]
        j = min(bisect.bisect_left(self.cumulative, rng.random()), len(self.categories) - 1)
        rows = self.by_category[self.categories[j]]
        return rows[rng.randrange(len(rows))]


def for_round(cfg, store: Store, round_no: int, train: list[dict]) -> tuple[Seeds, dict]:
    """This round's seed drawer and what the manifest records of it (``targeting``, ``scores_round``,
    ``category_means``, ``weights``; ``feedback`` where people's labels steer it, ``seeds_feedback``)."""
    drawer, info = targeted(cfg, store, round_no, train)
    drawer, info = seeds_canary.prefer_losses(cfg, store, drawer, info)  # synthesize.targeting: canary_losses
    return seeds_feedback.prefer_bad(store, round_no, train, drawer, info, cfg.synthesize.seed)


def targeted(cfg, store: Store, round_no: int, train: list[dict]) -> tuple[Seeds, dict]:
    """The drawer ``synthesize.targeting`` asks for, and what the manifest records of it."""
    info: dict = {"targeting": cfg.synthesize.targeting}
    if cfg.synthesize.targeting != "weakest":
        return Seeds(train, cfg.synthesize.seed), info
    k = scores_round(cfg, store, round_no)
    rows = read_scores(store, k) if k is not None else None
    if not rows:
        info.update(targeting="uniform", why="weakest: no evaluated round before this one to target")
        return Seeds(train, cfg.synthesize.seed), info
    metric = read_metrics(store, k, "duo synthesize (targeting: weakest)").get("decision_metric")
    means = category_means(rows, metric)
    weights = weakest_weights(train, means)
    info.update(scores_round=k,
                metric=metric,
                category_means={str(c): round(v, 4) for c, v in means.items()},
                weights={str(c): round(w, 4) for c, w in weights.items()})
    return Seeds(train, cfg.synthesize.seed, weights), info
