"""Exact and near-duplicate lookups over short texts (instructions), for synthetic-data cleaning.

Near-duplicates are found with MinHash/LSH (datasketch) over word shingles, then confirmed with the
exact Jaccard similarity of the two shingle sets, so a decision never rests on an LSH false
positive. The LSH bands are chosen for recall (a pair at the threshold is a candidate with
probability >= 0.9995; datasketch's own choice, balancing false positives, misses about 1 in 20
pairs at Jaccard 0.83 with threshold 0.8); the exact check keeps precision.

Cost stays linear in the number of texts (issue 11: 100k synthetic pairs a round). Bands tuned for
recall let through many false candidates once the index is large (texts of one task share words and
openings), so candidates are first screened with their MinHash estimate, all at once in numpy
(``SCREEN_MARGIN`` below the threshold: a pair at the threshold is screened out with probability <
1e-5 at 128 permutations), and only the survivors get the exact check. A text's shingles and MinHash
are computed once for the lookups and the insert that follow one another (``check`` then ``keep`` of
a pair, in both indexes).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

NUM_PERM = 128
NGRAM = 2  # word 1- and 2-grams: instructions are short, so one changed word must not sink the similarity
SCREEN_MARGIN = 0.2  # candidates whose MinHash estimate is this far below the threshold skip the exact check
_WORD = re.compile(r"\w+", re.UNICODE)


def normalize(text: str) -> str:
    """Case-folded words joined by single spaces: punctuation, case and spacing never
    make a pair different."""
    return " ".join(_WORD.findall(str(text).casefold()))


def shingles(text: str, ngram: int = NGRAM) -> set[str]:
    """Word n-grams of sizes 1..``ngram`` of the normalised text."""
    words = normalize(text).split()
    out: set[str] = set()
    for n in range(1, ngram + 1):
        out.update(" ".join(words[i:i + n]) for i in range(len(words) - n + 1))
    return out


def lsh_bands(threshold: float, num_perm: int, recall: float = 0.9995) -> tuple[int, int]:
    """(bands, rows per band): the most rows per band (fewest false candidates) that still find a pair at
    ``threshold`` with probability >= ``recall``."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold ** rows) ** bands >= recall:
            return bands, rows
    return num_perm, 1


def _hash32(shingle: str) -> int:
    """First 4 bytes of sha1, little-endian: stable across processes (unlike
    ``hash``), as datasketch's own."""
    return int.from_bytes(hashlib.sha1(shingle.encode("utf-8")).digest()[:4], "little")


def _hashes(text: str, ngram: int) -> np.ndarray:
    return np.unique(np.fromiter((_hash32(s) for s in shingles(text, ngram)), dtype=np.uint32))


@functools.lru_cache(maxsize=8)
def _template(num_perm: int):
    """A MinHash whose permutations (datasketch's own: seed 1, its default scheme) every index shares."""
    from datasketch import MinHash  # imports scipy (~0.5 s): only when an index is built

    return MinHash(num_perm=num_perm, hashfunc=int)


@functools.lru_cache(maxsize=8)
def _signature(text: str, ngram: int, num_perm: int):
    """(normalised text, sorted shingle hashes, MinHash or None when there are no shingles)
    of ``text``; cached for the few calls in a row that look the same text up in two
    indexes and then insert it."""
    hashes = _hashes(text, ngram)
    if not hashes.size:
        return normalize(text), hashes, None
    t = _template(num_perm)
    m = type(t)(num_perm=num_perm, hashfunc=int, permutations=t.permutations, scheme=t.scheme)
    m.update_batch(hashes.tolist())
    return normalize(text), hashes, m


def _jaccard_hashes(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - inter
    return inter / union if union else 1.0


@dataclass(frozen=True)
class Match:
    """The closest indexed text: its key, the Jaccard similarity, and whether it matched exactly."""

    key: str
    similarity: float
    exact: bool


class NearDupIndex:
    """Texts indexed for "is this an exact or near copy of something already here?".

    Args:
        threshold: Jaccard similarity (0-1] of word shingles at or above which two texts are near-duplicates.
        ngram: Largest word n-gram in a shingle set.
    """

    def __init__(self, threshold: float, *, ngram: int = NGRAM, num_perm: int = NUM_PERM):
        from datasketch import MinHashLSH  # imports scipy (~0.5 s): only when an index is built

        self.threshold = float(threshold)
        self.ngram = ngram
        self.num_perm = num_perm
        self._lsh = MinHashLSH(num_perm=num_perm, params=lsh_bands(self.threshold, num_perm))
        self._exact: dict[str, str] = {}
        self._hashes: dict[str, np.ndarray] = {}
        self._row: dict[str, int] = {}  # key -> its row of ``_sigs``
        self._sigs = np.empty((0, num_perm), dtype=_template(num_perm).hashvalues.dtype)

    def __len__(self) -> int:
        return len(self._hashes)

    def add(self, key: str, text: str) -> None:
        """Index ``text`` under ``key`` (a key already present is left as it was)."""
        if key in self._hashes:
            return
        norm, hashes, minhash = _signature(text, self.ngram, self.num_perm)
        self._exact.setdefault(norm, key)
        self._hashes[key] = hashes
        if minhash is not None:
            n = len(self._row)
            if n == len(self._sigs):  # grow by doubling: appending stays linear overall
                self._sigs = np.resize(self._sigs, (max(64, 2 * n), self.num_perm))
            self._sigs[n] = minhash.hashvalues
            self._row[key] = n
            self._lsh.insert(key, minhash)

    def add_many(self, items: Iterable[tuple[str, str]]) -> None:
        for key, text in items:
            self.add(key, text)

    def match(self, text: str) -> Match | None:
        """The exact copy of ``text`` if indexed, else the most similar near-duplicate
        at or above threshold."""
        norm, hashes, minhash = _signature(text, self.ngram, self.num_perm)
        key = self._exact.get(norm)
        if key is not None:
            return Match(key, 1.0, True)
        if minhash is None:
            return None
        cands = sorted(self._lsh.query(minhash))
        if len(cands) > 8:  # screen many candidates at once by their MinHash estimate
            estimate = (self._sigs[[self._row[c] for c in cands]] == minhash.hashvalues).mean(axis=1)
            cands = [c for c, e in zip(cands, estimate) if e >= self.threshold - SCREEN_MARGIN]
        best: Match | None = None
        for cand in cands:
            sim = _jaccard_hashes(hashes, self._hashes[cand])
            if sim >= self.threshold and (best is None or sim > best.similarity):
                best = Match(cand, round(sim, 4), False)
        return best


# What PairFilter.check returns.
REASONS = ("empty", "truncated", "test_overlap", "duplicate", "near_duplicate")


class PairFilter:
    """Decides whether a synthetic (instruction, response) pair is kept, or why it is removed.

    Reasons, checked in this order: ``empty``, ``truncated`` (response shorter than
    ``min_response_chars`` or cut by the token limit), ``test_overlap`` (instruction within
    ``decontamination_threshold`` of a test prompt, exact copies included), ``duplicate`` and
    ``near_duplicate`` (of any known instruction: the coverage train split, earlier rounds'
    synthetic data, and pairs already kept).
    """

    def __init__(self, *, near_duplicate_threshold: float, decontamination_threshold: float,
                 min_response_chars: int):
        self.min_response_chars = min_response_chars
        self.test = NearDupIndex(decontamination_threshold)
        self.known = NearDupIndex(near_duplicate_threshold)

    def add_test(self, items: Iterable[tuple[str, str]]) -> None:
        """Test prompts as (id, instruction): nothing too close to them may be kept."""
        self.test.add_many(items)

    def add_known(self, items: Iterable[tuple[str, str]]) -> None:
        """Instructions already in the training set, as (id, instruction)."""
        self.known.add_many(items)

    def check(self, instruction: object, response: object, *, cut: bool = False) -> tuple[str | None, dict]:
        """(None, {}) to keep the pair, else (reason, details: ``match`` id and
        ``similarity`` when relevant)."""
        if not isinstance(instruction, str) or not isinstance(response, str) \
                or not instruction.strip() or not response.strip():
            return "empty", {}
        if cut or len(response.strip()) < self.min_response_chars:
            if cut:
                return "truncated", {"cut_by_token_limit": cut}
            return "truncated", {"response_chars": len(response.strip())}
        m = self.test.match(instruction)
        if m is not None:
            return "test_overlap", {"match": m.key, "similarity": m.similarity}
        m = self.known.match(instruction)
        if m is not None:
            reason = "duplicate" if m.exact else "near_duplicate"
            return reason, {"match": m.key, "similarity": m.similarity}
        return None, {}

    def keep(self, key: str, instruction: str) -> None:
        """Remember a kept pair so later copies of it are removed."""
        self.known.add(key, instruction)
