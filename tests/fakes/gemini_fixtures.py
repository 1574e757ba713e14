"""Fixtures for the fake Gemini server: one server per session, reset for every test that asks for it.

``fake_gemini`` yields the ``FakeGemini`` with ``GEMINI_API_KEY`` set to its key and ``GOOGLE_GEMINI_BASE_URL`` to
its URL.
"""

from __future__ import annotations

import pytest

from .gemini_server import FakeGemini


@pytest.fixture(scope="session")
def fake_gemini_session():
    server = FakeGemini().start()
    yield server
    server.stop()


@pytest.fixture
def fake_gemini(fake_gemini_session, monkeypatch):
    server = fake_gemini_session
    server.reset()
    monkeypatch.setenv("GEMINI_API_KEY", server.api_key)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
    yield server
    server.reset()
