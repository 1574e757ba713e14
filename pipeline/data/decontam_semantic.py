"""Semantic decontamination: a synthetic instruction whose meaning is a test prompt's is dropped.

MinHash (``dedup.PairFilter``) catches copies, case changes and small edits of a test prompt, but
not a reordered or reworded one ("Are you as smart as ChatGPT?" for "... as capable as ..."). This
filter embeds every test prompt once with the offline MiniLM (``pipeline.data.embeddings``) and
drops a candidate whose cosine similarity with any of them is at or above
``synthesize.decontaminate.threshold``. How the default threshold was chosen (catch rate on
hand-written paraphrase probes vs false drops on unrelated prompts): docs/decontamination.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

REASON = "semantic_contaminated"
# Texts per MiniLM forward pass: a chunk's instructions (sorted by length, so little padding) go through in
# one call (issue 24): 64 was the fastest of 32-256 (640 short instructions, 1 torch thread: 12.9 s; 18.5 s
# at 5 texts a call).
BATCH_SIZE = 64


class SemanticFilter:
    """The test prompts' embeddings, and the nearest one to each candidate instruction."""

    def __init__(self, test: Iterable[tuple[str, str]], *, threshold: float, model: str):
        from .embeddings import get_embedder

        items = [(str(key), str(text or "")) for key, text in test]
        self.threshold = float(threshold)
        self.keys = [key for key, _ in items]
        self.embedder = get_embedder(model, "synthesize.decontaminate.model")
        self.matrix = self.embedder.encode([text for _, text in items])

    def nearest(self, instructions: Sequence[str]) -> list[tuple[str | None, float]]:
        """(key of the most similar test prompt, its cosine similarity) per instruction; (None, 0.0) without
        test prompts."""
        if not self.keys or not instructions:
            return [(None, 0.0) for _ in instructions]
        texts = [str(t or "") for t in instructions]
        unique = list(dict.fromkeys(texts))  # a text said twice is embedded once
        sims = self.embedder.encode(unique, batch_size=BATCH_SIZE) @ self.matrix.T
        best = sims.argmax(axis=1)
        nearest = {text: (self.keys[int(j)], round(float(sims[i, j]), 4)) for i, (text, j) in
                   enumerate(zip(unique, best))}
        return [nearest[t] for t in texts]

    def check(self, instructions: Sequence[str]) -> list[dict | None]:
        """Per instruction: ``{"match": test key, "similarity": cosine}`` when it is too close to a
        test prompt, else None."""
        return [{"match": key, "similarity": sim} if key is not None and sim >= self.threshold else None
                for key, sim in self.nearest(instructions)]


def load(cfg, test_rows: list[dict]) -> SemanticFilter | None:
    """The filter for this config and test split, or None when
    ``synthesize.decontaminate.semantic`` is off."""
    settings = cfg.synthesize.decontaminate
    if not settings.semantic:
        return None
    return SemanticFilter(((r["id"], r["instruction"]) for r in test_rows), threshold=settings.threshold,
                          model=settings.model)
