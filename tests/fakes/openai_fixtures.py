"""Fixtures for the fake OpenAI server: one server per session, reset for every test that asks for it.

``fake_openai`` yields the ``FakeOpenAI`` with ``OPENAI_API_KEY`` set to its key and ``OPENAI_BASE_URL`` to its
``/v1`` URL, so both an engine built from config (``base_url: null``) and a bare ``openai`` client reach it.
"""

from __future__ import annotations

import pytest

from .openai_server import FakeOpenAI


@pytest.fixture(scope="session")
def fake_openai_session():
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def fake_openai(fake_openai_session, monkeypatch):
    server = fake_openai_session
    server.reset()
    monkeypatch.setenv("OPENAI_API_KEY", server.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    yield server
    server.reset()
