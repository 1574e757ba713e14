import json
import random
from pathlib import Path

import pytest

from pipeline.data.dedup import NearDupIndex, PairFilter, normalize, shingles
from tests.textsim import jaccard

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "alpaca_eval_sample.jsonl"


def sample_instructions() -> list[str]:
    return [json.loads(line)["instruction"] for line in SAMPLE.read_text().splitlines()]


def test_normalize_ignores_case_punctuation_and_spacing():
    assert normalize("  Hello,   WORLD!\n") == "hello world"
    assert shingles("a b c") == {"a", "b", "c", "a b", "b c"}


def test_exact_copy_after_normalisation_is_exact():
    idx = NearDupIndex(0.8)
    idx.add("t1", "Write a haiku about autumn leaves.")
    m = idx.match("write a HAIKU about autumn leaves")
    assert m is not None and m.exact and m.key == "t1" and m.similarity == 1.0


@pytest.mark.parametrize("edited", [
    # one word swapped in a long instruction
    "Explain in simple terms how a refrigerator keeps food cold, and why it needs electricity to do so at home.",
    # a word added
    "Explain in simple terms how a refrigerator keeps food cold, and why it needs electricity to do so at all.",
    # a comma dropped and a word swapped for a synonym
    "Explain in simple terms how a refrigerator keeps food cold and why it needs power to do so.",
])
def test_near_duplicates_with_small_edits_are_caught(edited):
    original = "Explain in simple terms how a refrigerator keeps food cold, and why it needs electricity to do so."
    idx = NearDupIndex(0.8)
    idx.add("orig", original)
    m = idx.match(edited)
    assert m is not None and not m.exact and m.key == "orig"
    assert m.similarity == pytest.approx(jaccard(original, edited), abs=1e-4)
    assert m.similarity >= 0.8


def test_different_real_instructions_are_kept():
    texts = sample_instructions()
    idx = NearDupIndex(0.8)
    flagged = []
    for i, text in enumerate(texts):
        if idx.match(text) is not None:
            flagged.append(text)
        idx.add(f"s{i}", text)
    # AlpacaEval's helpful_base has a templated prompt ("I like to host guests ... recipe for <dish>") whose
    # copies differ in one dish name: word-shingle Jaccard calls them near-duplicates; nothing else is flagged.
    assert flagged and all(t.startswith("I like to host guests at my home") for t in flagged)
    assert len(flagged) <= 3
    # ...and every text is found again, exactly
    assert all(idx.match(t).exact for t in texts)


def test_same_template_different_subject_is_not_a_near_duplicate_at_08():
    idx = NearDupIndex(0.8)
    idx.add("fr", "What is the capital city of France and what is it famous for?")
    assert idx.match("What is the capital city of Peru and what is it known for?") is None


def test_lower_threshold_catches_looser_paraphrases():
    a = "Give me three tips for staying focused while studying for exams."
    b = "Give me five tips for staying focused while studying for an exam."
    assert 0.4 < jaccard(a, b) < 0.8
    strict, loose = NearDupIndex(0.8), NearDupIndex(0.4)
    strict.add("a", a)
    loose.add("a", a)
    assert strict.match(b) is None
    assert loose.match(b).key == "a"


def test_empty_text_matches_only_empty():
    idx = NearDupIndex(0.8)
    idx.add("x", "some words here")
    assert idx.match("") is None
    idx.add("e", "  ")
    assert idx.match("").key == "e"


def test_pair_filter_reasons_in_order():
    f = PairFilter(near_duplicate_threshold=0.8, decontamination_threshold=0.6, min_response_chars=10)
    f.add_test([("cov-000002", "Name three famous painters from the Italian Renaissance period.")])
    f.add_known([("cov-000001", "Explain how vaccines train the immune system to fight infections.")])
    long = "A complete answer of some length."
    assert f.check("", long)[0] == "empty"
    assert f.check("Say hi", None)[0] == "empty"
    assert f.check("Say hi", "Hi")[0] == "truncated"
    assert f.check("Say hi", long, cut=True) == ("truncated", {"cut_by_token_limit": True})
    assert f.check("Name three famous painters from the Italian Renaissance period!", long) == \
        ("test_overlap", {"match": "cov-000002", "similarity": 1.0})
    # looser than a near-duplicate, still too close to a test prompt
    reason, info = f.check("Name three famous sculptors from the Italian Renaissance period.", long)
    assert reason == "test_overlap" and 0.6 <= info["similarity"] < 0.8
    assert f.check("explain how vaccines train the immune system to fight infections", long)[0] == "duplicate"
    assert f.check("Explain how vaccines train the human immune system to fight infections.", long)[0] == \
        "near_duplicate"
    assert f.check("Write a limerick about a cat who loves the rain.", long) == (None, {})
    f.keep("syn-r1-000001", "Write a limerick about a cat who loves the rain.")
    assert f.check("Write a funny limerick about a cat who loves the rain.", long)[0] == "near_duplicate"


def test_recall_at_the_threshold():
    # 300 pairs whose exact Jaccard is just above the threshold (two words swapped out of 30, about 0.815):
    # LSH must surface every one of them.
    rng = random.Random(0)
    vocab = [f"word{i}" for i in range(5000)]
    idx = NearDupIndex(0.8)
    queries = []
    for i in range(300):
        words = rng.sample(vocab, 30)
        idx.add(f"d{i}", " ".join(words))
        edited = words[:]
        edited[rng.randrange(1, 14)] = "swapped"
        edited[rng.randrange(16, 29)] = "replaced"
        query = " ".join(edited)
        assert 0.8 <= jaccard(" ".join(words), query) < 0.83
        queries.append((f"d{i}", query))
    missed = [key for key, q in queries if (m := idx.match(q)) is None or m.key != key]
    assert missed == []


def test_screening_many_candidates_finds_what_an_exhaustive_search_finds():
    """Issue 11: texts of one task share openings, so a large index hands many LSH candidates to each lookup; they
    are screened by their MinHash estimate before the exact check. The screen must never change the answer."""
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(300)]
    texts = {f"d{i}": "Write a detailed essay about the history of " + " ".join(rng.sample(vocab, 6))
             for i in range(400)}
    idx = NearDupIndex(0.6)
    idx.add_many(texts.items())
    queries = []
    for i in range(60):
        words = texts[f"d{rng.randrange(400)}"].split()
        words[rng.randrange(8, len(words))] = rng.choice(vocab)  # an edit of an indexed text, or of nothing new
        queries.append(" ".join(words) if i % 2 else "Write a detailed essay about the history of "
                       + " ".join(rng.sample(vocab, 6)))
    for q in queries:
        sims = {k: jaccard(t, q) for k, t in texts.items()}
        best = max(sims.values())
        m = idx.match(q)
        if best < 0.6:
            assert m is None
        else:
            assert m is not None and sims[m.key] == pytest.approx(best, abs=1e-4)
            assert m.similarity == pytest.approx(best, abs=1e-4)
    assert sum(idx.match(q) is not None for q in queries) >= 30  # the case was exercised


def test_two_indexes_agree_on_a_text_looked_up_and_inserted_in_a_row():
    """The signature of a text is computed once for the lookups and the insert that follow each other."""
    f = PairFilter(near_duplicate_threshold=0.8, decontamination_threshold=0.6, min_response_chars=1)
    f.add_test([("t1", "Describe the water cycle in four steps for a child.")])
    text = "Describe the water cycle in four short steps for a child."
    assert f.check(text, "an answer")[0] == "test_overlap"
    f.keep("k1", text)
    assert f.known.match(text).key == "k1" and f.known.match(text + " Please.").key == "k1"
