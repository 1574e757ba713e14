"""Exact and near-duplicate lookups over short texts (instructions), for synthetic-data cleaning.

Near-duplicates are found with MinHash/LSH (datasketch) over word shingles, then confirmed with the exact
Jaccard similarity of the two shingle sets, so a decision never rests on an LSH false positive. The LSH bands
are chosen for recall (a pair at the threshold is a candidate with probability >= 0.9995; datasketch's own
choice, balancing false positives, misses about 1 in 20 pairs at Jaccard 0.83 with threshold 0.8); the exact
check keeps precision.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

NUM_PERM = 128
NGRAM = 2  # word 1- and 2-grams: instructions are short, so one changed word must not sink the similarity
_WORD = re.compile(r"\w+", re.UNICODE)


def normalize(text: str) -> str:
    """Case-folded words joined by single spaces: punctuation, case and spacing never make a pair different."""
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
    """First 4 bytes of sha1, little-endian: stable across processes (unlike ``hash``), as datasketch's own."""
    return int.from_bytes(hashlib.sha1(shingle.encode("utf-8")).digest()[:4], "little")


def _hashes(text: str, ngram: int) -> np.ndarray:
    return np.unique(np.fromiter((_hash32(s) for s in shingles(text, ngram)), dtype=np.uint32))


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
        from datasketch import MinHash, MinHashLSH  # imports scipy (~0.5 s): only when an index is built

        self._MinHash = MinHash
        self.threshold = float(threshold)
        self.ngram = ngram
        self.num_perm = num_perm
        self._lsh = MinHashLSH(num_perm=num_perm, params=lsh_bands(self.threshold, num_perm))
        template = MinHash(num_perm=num_perm, hashfunc=int)
        self._perm, self._scheme = template.permutations, template.scheme
        self._exact: dict[str, str] = {}
        self._hashes: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._hashes)

    def _minhash(self, hashes: np.ndarray):
        m = self._MinHash(num_perm=self.num_perm, hashfunc=int, permutations=self._perm, scheme=self._scheme)
        m.update_batch(hashes.tolist())
        return m

    def add(self, key: str, text: str) -> None:
        """Index ``text`` under ``key`` (a key already present is left as it was)."""
        if key in self._hashes:
            return
        self._exact.setdefault(normalize(text), key)
        hashes = _hashes(text, self.ngram)
        self._hashes[key] = hashes
        if hashes.size:
            self._lsh.insert(key, self._minhash(hashes))

    def add_many(self, items: Iterable[tuple[str, str]]) -> None:
        for key, text in items:
            self.add(key, text)

    def match(self, text: str) -> Match | None:
        """The exact copy of ``text`` if indexed, else the most similar near-duplicate at or above threshold."""
        key = self._exact.get(normalize(text))
        if key is not None:
            return Match(key, 1.0, True)
        hashes = _hashes(text, self.ngram)
        if not hashes.size:
            return None
        best: Match | None = None
        for cand in sorted(self._lsh.query(self._minhash(hashes))):
            sim = _jaccard_hashes(hashes, self._hashes[cand])
            if sim >= self.threshold and (best is None or sim > best.similarity):
                best = Match(cand, round(sim, 4), False)
        return best


REASONS = ("empty", "truncated", "test_overlap", "duplicate", "near_duplicate")  # what PairFilter.check returns


class PairFilter:
    """Decides whether a synthetic (instruction, response) pair is kept, or why it is removed.

    Reasons, checked in this order: ``empty``, ``truncated`` (response shorter than ``min_response_chars`` or
    cut by the token limit), ``test_overlap`` (instruction within ``decontamination_threshold`` of a test
    prompt, exact copies included), ``duplicate`` and ``near_duplicate`` (of any known instruction: the coverage
    train split, earlier rounds' synthetic data, and pairs already kept).
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
        """(None, {}) to keep the pair, else (reason, details: ``match`` id and ``similarity`` when relevant)."""
        if not isinstance(instruction, str) or not isinstance(response, str) \
                or not instruction.strip() or not response.strip():
            return "empty", {}
        if cut or len(response.strip()) < self.min_response_chars:
            return "truncated", {"cut_by_token_limit": cut} if cut else {"response_chars": len(response.strip())}
        m = self.test.match(instruction)
        if m is not None:
            return "test_overlap", {"match": m.key, "similarity": m.similarity}
        m = self.known.match(instruction)
        if m is not None:
            return ("duplicate" if m.exact else "near_duplicate"), {"match": m.key, "similarity": m.similarity}
        return None, {}

    def keep(self, key: str, instruction: str) -> None:
        """Remember a kept pair so later copies of it are removed."""
        self.known.add(key, instruction)
