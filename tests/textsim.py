"""Exact text similarity for tests: what the MinHash index in pipeline.data.dedup estimates."""

from __future__ import annotations

from pipeline.data.dedup import NGRAM, shingles


def jaccard(a: str, b: str, ngram: int = NGRAM) -> float:
    """Exact Jaccard similarity of two texts' shingle sets (1.0 for two empty texts)."""
    sa, sb = shingles(a, ngram), shingles(b, ngram)
    return 1.0 if not sa and not sb else len(sa & sb) / len(sa | sb)
