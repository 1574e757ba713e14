"""Personal data out of every request duo sends to a service LLM: one scrub
function, stable placeholders.

Detection is Microsoft Presidio's analyzer (``pip install -e '.[privacy]'``) run without a language
model: its pattern recognizers for emails, phone numbers (``phonenumbers``), card numbers
(Luhn-checked), IBANs (checksum) and IP addresses, plus pattern recognizers of our own for API keys
and secrets (Presidio has none), and people's names only when a spaCy English model is installed
(``privacy.ner_model``). Each value found is replaced by a placeholder such as ``<EMAIL_1>``; within
one request the same value always gets the same placeholder, and the numbering depends only on the
request's text, so a rerun sends the same request (and re-uses the journal).

Counts per type are added to the active :func:`tally` (``synthesize`` and ``evaluate`` record them
in their manifests as ``scrubbed``). Presidio is imported only when the first text is scrubbed.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections import Counter
from functools import lru_cache

from ..errors import DuoError

# The one command that installs the detector (scripts/install installs it by default), as cli.TRAIN_HINT
HINT = "pip install 'duo[privacy]' (or pip install -e '.[privacy]' in a checkout)"

# Presidio's entity name -> our placeholder's name (and the manifest's count key).
LABELS = {"EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CARD", "IBAN_CODE": "IBAN",
          "IP_ADDRESS": "IP", "SECRET": "KEY", "PERSON": "NAME"}
TYPES = ("EMAIL", "PHONE", "CARD", "IBAN", "IP", "KEY", "NAME")
# Requests whose scrubbed texts are remembered (a synthesis round repeats its seeds' prompts).
SCRUB_CACHE = 4096
MIN_SCORE = 0.3  # Presidio gives a phone number found by phonenumbers 0.4; below this is noise
NER_MODELS = ("en_core_web_lg", "en_core_web_md", "en_core_web_sm", "en_core_web_trf")
# API keys and secrets by their shapes (case-sensitive); the last one is a long token right after a word that
# names a secret ("api_key: ...", "token=...").
SECRET_PATTERNS = (
    ("openai/anthropic", r"\bsk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_\-]{20,}"),
    ("aws access key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("github", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})\b"),
    ("hugging face", r"\bhf_[A-Za-z0-9]{30,}\b"),
    ("google api key", r"\bAIza[0-9A-Za-z_\-]{30,}"),
    ("slack", r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"),
    ("stripe", r"\b[rsp]k_(?:live|test)_[A-Za-z0-9]{16,}\b"),
    ("jwt", r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    ("private key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----.+?-----END [A-Z ]*PRIVATE KEY-----"),
    ("after a secret word", (r"(?<=(?i:api[_\- ]?key|secret|token|password|passwd|access[_\- ]?key|bearer)"
                             r"[\"']?\s*[:=]?\s*[\"']?)(?=[A-Za-z_\-./+=]*[0-9])[A-Za-z0-9_\-./+=]{12,}")),
)

_TALLY: contextvars.ContextVar[Counter | None] = contextvars.ContextVar("duo_scrub_tally", default=None)


@contextlib.contextmanager
def tally():
    """Count what :func:`scrub_messages` replaces while the block runs: yields a Counter (type -> values)."""
    counts: Counter = Counter()
    token = _TALLY.set(counts)
    try:
        yield counts
    finally:
        _TALLY.reset(token)


def counts_of(counts: Counter) -> dict:
    """The manifest's ``scrubbed``: every type, 0 when none was found."""
    return {t: int(counts.get(t, 0)) for t in TYPES}


def enabled(cfg) -> bool:
    """Whether requests to a service are scrubbed (``privacy.scrub``, default true)."""
    privacy = getattr(cfg, "privacy", None)
    return True if privacy is None else bool(privacy.scrub)


def scrub_messages(cfg, messages: list[dict]) -> list[dict]:
    """``messages`` with personal data replaced by placeholders (one numbering for the whole
    request), counted in the active :func:`tally`; unchanged when ``privacy.scrub`` is off."""
    if not enabled(cfg):
        return messages
    privacy = getattr(cfg, "privacy", None)
    texts = tuple(m.get("content") if isinstance(m.get("content"), str) else None for m in messages)
    scrubbed, labels = _scrub_request(_ner_model(getattr(privacy, "ner_model", "auto")), texts)
    counts = _TALLY.get()
    if counts is not None:
        counts.update(labels)  # every request counts, a repeated one too
    return [m if t is None else {**m, "content": t} for m, t in zip(messages, scrubbed)]


@lru_cache(maxsize=SCRUB_CACHE)
def _scrub_request(ner_model: str | None, texts: tuple[str | None, ...]) -> tuple[tuple, tuple[str, ...]]:
    """(scrubbed texts, the type of each value found) of one request's texts, remembered: synthesis sends
    each seed's prompt many times, and Presidio is the slow part (issue 24)."""
    scrubbed, names = _scrub(_analyzer(ner_model), list(texts))
    return tuple(scrubbed), tuple(label for label, _ in names)


def scrub_text(text: str, ner_model: str | None = None) -> tuple[str, dict[str, str]]:
    """One text scrubbed on its own: (scrubbed text, placeholder -> original value)."""
    scrubbed, names = _scrub(_analyzer(_ner_model(ner_model)), [text])
    return scrubbed[0], {ph: value for (_, value), ph in names.items()}


def _scrub(analyzer, texts: list[str | None]) -> tuple[list[str | None], dict[tuple[str, str], str]]:
    """``texts`` (one request) with every value found in any of them replaced wherever it occurs, and the
    (type, value) -> placeholder map, numbered per type in order of appearance."""
    names: dict[tuple[str, str], str] = {}
    for text in texts:
        for start, stop, label in _spans(analyzer.analyze(text, language="en", score_threshold=MIN_SCORE)
                                         if text else []):
            key = (label, text[start:stop])
            if key not in names:
                names[key] = f"<{label}_{sum(1 for lab, _ in names if lab == label) + 1}>"
    if not names:
        return texts, names
    by_value = {value: ph for (_, value), ph in names.items()}
    alternatives = "|".join(re.escape(v) for v in sorted(by_value, key=len, reverse=True))
    # Every occurrence, even inside a longer token: over-scrubbing is the safe side.
    pattern = re.compile(alternatives)
    return [pattern.sub(lambda m: by_value[m.group(0)], t) if t else t for t in texts], names


def _spans(results) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, label) in text order; where findings overlap the
    surer (then longer) wins."""
    chosen: list[tuple[int, int, str]] = []
    for r in sorted(results, key=lambda r: (-r.score, -(r.end - r.start), r.start)):
        label = LABELS.get(r.entity_type)
        if label and all(r.end <= s or r.start >= e for s, e, _ in chosen):
            chosen.append((r.start, r.end, label))
    return sorted(chosen)


def _ner_model(setting: str | None) -> str | None:
    """The spaCy model used for names: ``auto`` picks an installed English one (none: no name detection)."""
    if setting in (None, "", "none"):
        return None
    import importlib.util

    candidates = NER_MODELS if setting == "auto" else (setting,)
    found = next((m for m in candidates if importlib.util.find_spec(m) is not None), None)
    if found is None and setting != "auto":
        raise DuoError(f"privacy.ner_model: spaCy model '{setting}' is not installed; install it, "
                       "or set privacy.ner_model: auto "
                       "(names are then left as they are when no model is installed)")
    return found


@lru_cache(maxsize=4)
def _analyzer(ner_model: str | None):
    """Presidio's AnalyzerEngine with pattern recognizers only (plus spaCy names when ``ner_model``)."""
    try:
        import presidio_analyzer.predefined_recognizers as known
        from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    except ImportError:
        raise DuoError("privacy.scrub is on (the default) but presidio-analyzer (the 'privacy' extra) is not "
                       f"installed: {HINT}, or set privacy.scrub: false to send data unscrubbed") from None
    import regex
    import tldextract

    # The bundled suffix list: no download.
    offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(known.EmailRecognizer):
        def validate_result(self, pattern_text: str):
            return offline(pattern_text).fqdn != ""

    secrets = PatternRecognizer(supported_entity="SECRET", name="SecretRecognizer",
                                patterns=[Pattern(name, rx, 0.9) for name, rx in SECRET_PATTERNS],
                                global_regex_flags=regex.DOTALL | regex.MULTILINE)
    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in (OfflineEmailRecognizer(), known.PhoneRecognizer(), known.CreditCardRecognizer(),
                       known.IbanRecognizer(), known.IpRecognizer(), secrets):
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(registry=registry,
                          nlp_engine=_nlp_engine(ner_model, registry),
                          supported_languages=["en"])


def _nlp_engine(ner_model: str | None, registry):
    """No language model (pattern recognizers only), or spaCy's ``ner_model`` with its PERSON recognizer."""
    if ner_model is None:
        from presidio_analyzer.nlp_engine import NoOpNlpEngine

        return NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import SpacyRecognizer

    registry.add_recognizer(SpacyRecognizer(supported_entities=["PERSON"]))
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": ner_model}])
    engine.load()
    return engine
