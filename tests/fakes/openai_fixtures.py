"""Fixtures for the fake OpenAI server: one server per session, reset for every test that asks for it.

``fake_openai`` yields the ``FakeOpenAI`` with ``OPENAI_API_KEY`` set to its key and ``OPENAI_BASE_URL`` to its
``/v1`` URL, so both an engine built from config (``base_url: null``) and a bare ``openai`` client reach it.
"""

from __future__ import annotations

import pytest

from pipeline.config import DEFAULT_KEY_ENV, ServiceLLMConfig
from pipeline.schemas import load_schema

from .openai_server import FakeOpenAI


def service_cfg(provider: str = "openai", model: str | None = None, **overrides) -> ServiceLLMConfig:
    """A service config with the schema's defaults, for engine tests (``base_url`` None: the env var decides)."""
    props = load_schema("config.schema.json")["$defs"]["service_llm"]["properties"]
    doc = {k: v["default"] for k, v in props.items() if "default" in v}
    doc.update(provider=provider, model=model or ("gpt-4o" if provider == "openai" else "gemini-2.0-flash"))
    doc.update(overrides)
    doc["api_key_env"] = doc.get("api_key_env") or DEFAULT_KEY_ENV[provider]
    return ServiceLLMConfig(**doc)


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
