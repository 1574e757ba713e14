"""Offline metrics: each scores a candidate answer against the service LLM's answer, with no service call.

``rougeL`` is ROUGE-L F1 (0-1), ``bleu`` is sentence BLEU (0-100, sacrebleu), ``embedding`` is the cosine
similarity of all-MiniLM-L6-v2 sentence embeddings (see ``embeddings.py``). The judge's ``similarity`` and
``precision`` (1-100) come from ``evaluate.py``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# rouge-score's own tokenizer keeps only [a-z0-9], so any non-Latin answer scores 0. This one keeps every
# letter and digit and splits CJK/kana/hangul runs into characters, which have no spaces between words.
_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)
_CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


class _UnicodeTokenizer:
    """A rouge-score tokenizer: lower-cased Unicode words, Porter-stemmed when ASCII and longer than 3."""

    def __init__(self) -> None:
        from nltk.stem import porter  # rouge-score depends on nltk; the stemmer needs no downloaded data

        self._stemmer = porter.PorterStemmer()

    def tokenize(self, text: str) -> list[str]:
        tokens: list[str] = []
        for word in _WORD_RE.findall(text.lower()):
            if _CJK_RE.search(word):
                tokens.extend(_split_cjk(word))
            elif word.isascii() and len(word) > 3:
                tokens.append(self._stemmer.stem(word))
            else:
                tokens.append(word)
        return tokens


def _split_cjk(word: str) -> list[str]:
    out, run = [], ""
    for ch in word:
        if _CJK_RE.match(ch):
            if run:
                out.append(run)
                run = ""
            out.append(ch)
        else:
            run += ch
    if run:
        out.append(run)
    return out


def rouge_l(candidates: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L F1 of each candidate against its reference, 0-1."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_UnicodeTokenizer())
    return [float(scorer.score(ref or "", cand or "")["rougeL"].fmeasure)
            for cand, ref in zip(candidates, references)]


def bleu(candidates: Sequence[str], references: Sequence[str]) -> list[float]:
    """Sentence BLEU (sacrebleu, effective order) of each candidate against its reference, 0-100."""
    import sacrebleu

    # "intl" tokenizes punctuation and symbols of any script, unlike the default 13a.
    metric = sacrebleu.metrics.BLEU(tokenize="intl", effective_order=True)
    return [float(metric.sentence_score(cand or "", [ref or ""]).score)
            for cand, ref in zip(candidates, references)]


def embedding_similarity(candidates: Sequence[str], references: Sequence[str], model: str) -> list[float]:
    """Cosine similarity of each candidate's embedding with its reference's (-1..1, in practice 0-1)."""
    from ..data.embeddings import cosine_similarities

    return cosine_similarities(candidates, references, model=model)


def offline_scores(metrics: Sequence[str], candidates: Sequence[str], references: Sequence[str],
                   *, embedding_model: str) -> dict[str, list[float]]:
    """Every offline metric named in ``metrics`` (others ignored): metric -> one score per candidate."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} references")
    out: dict[str, list[float]] = {}
    if "rougeL" in metrics:
        out["rougeL"] = rouge_l(candidates, references)
    if "bleu" in metrics:
        out["bleu"] = bleu(candidates, references)
    if "embedding" in metrics:
        out["embedding"] = embedding_similarity(candidates, references, embedding_model)
    return out
