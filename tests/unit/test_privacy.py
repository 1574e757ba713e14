"""pipeline.data.privacy: Presidio's pattern recognizers (no language model) plus our key patterns, stable placeholders."""

import pytest

from pipeline.config import build_config
from pipeline.data import privacy

pytest.importorskip("presidio_analyzer")

PLANTED = {
    "EMAIL": ["jane.doe@example.com", "ops+alerts@mail.acme.co.uk"],
    "PHONE": ["+1 415-555-0132", "(212) 555-0199", "+44 20 7946 0958"],
    "CARD": ["4111 1111 1111 1111", "5500-0000-0000-0004"],
    "IBAN": ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432"],
    "IP": ["192.168.10.42", "2001:db8::1"],
    "KEY": ["sk-proj-abcDEF1234567890abcdefXYZ", "AKIAIOSFODNN7EXAMPLE", "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "hf_abcdefghijklmnopqrstuvwxyz01234567", "AIzaSyA1234567890abcdefghijklmnopqrstu"],
}


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_each_planted_value_is_replaced_by_a_typed_placeholder(kind):
    for value in PLANTED[kind]:
        text, found = privacy.scrub_text(f"Please note: {value} is what you asked for.")
        assert value not in text and found == {f"<{kind}_1>": value}, (value, text)


def test_secret_after_a_key_word_and_the_same_value_gets_the_same_placeholder():
    text, found = privacy.scrub_text('api_key = "Zx81kQ0pLmN2vB7c"; again Zx81kQ0pLmN2vB7c? mail a@b.io, c@d.io, a@b.io')
    assert "Zx81kQ0pLmN2vB7c" not in text and found["<KEY_1>"] == "Zx81kQ0pLmN2vB7c"
    assert text.count("<EMAIL_1>") == 2 and text.count("<EMAIL_2>") == 1


def test_ordinary_numbers_and_words_are_left_alone():
    text = ("Mount Everest is 8,849 metres tall; in 1990-2000 the town grew to 300,000. Python 3.11.2, ISBN "
            "978-3-16-148410-0, call at 10:30 in room 4B. The token of appreciation was a secret recipe.")
    assert privacy.scrub_text(text) == (text, {})


def test_one_numbering_per_request_across_its_messages_counted_in_the_tally(tmp_path):
    cfg = build_config({"task": {"name": "t"}, "data": {"source": "d.jsonl"}, "student": {"model": "m"}},
                       base_dir=tmp_path)
    messages = [{"role": "system", "content": "Judge."}, {"role": "user", "content": "ref: x@y.org\nanswer: x@y.org"}]
    with privacy.tally() as counts:
        out = privacy.scrub_messages(cfg, messages)
        privacy.scrub_messages(cfg, [{"role": "user", "content": "call +1 415-555-0132"}])
    assert out[1]["content"] == "ref: <EMAIL_1>\nanswer: <EMAIL_1>" and out[0] == messages[0]
    assert privacy.counts_of(counts) == {"EMAIL": 1, "PHONE": 1, "CARD": 0, "IBAN": 0, "IP": 0, "KEY": 0, "NAME": 0}
    off = build_config({**cfg.raw, "privacy": {"scrub": False}}, base_dir=tmp_path)
    assert privacy.scrub_messages(off, messages) is messages
