"""Fixtures for the fake Hugging Face Hub.

huggingface_hub and datasets read ``HF_ENDPOINT`` when first imported, so the session's FakeHub starts when this
plugin module is imported (tests/conftest.py lists it in ``pytest_plugins``, before any test imports them).
"""

from __future__ import annotations

import os

import pytest

from .hub_server import FAKE_TOKEN, FAKE_USER, FakeHub

HUB = FakeHub().start()
os.environ["HF_ENDPOINT"] = HUB.url

__all__ = ["FAKE_TOKEN", "FAKE_USER", "HUB", "fake_hub"]


@pytest.fixture
def fake_hub(monkeypatch):
    """The session's FakeHub, emptied, with ``HF_TOKEN`` set to its token and ``HF_ENDPOINT`` pointing at it."""
    HUB.reset()
    monkeypatch.setenv("HF_ENDPOINT", HUB.url)
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    yield HUB
    HUB.reset()
