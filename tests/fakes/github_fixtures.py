"""Fixtures for the fake GitHub API: one server per session, reset for every test."""

from __future__ import annotations

import pytest

from tests.fakes.github_server import NAME, OWNER, TOKEN, FakeGitHub


@pytest.fixture(scope="session")
def github_server():
    server = FakeGitHub().start()
    yield server
    server.stop()


@pytest.fixture
def fake_github(github_server, monkeypatch):
    """The fake GitHub, reset, with GITHUB_TOKEN / GITHUB_REPOSITORY / GITHUB_API_URL pointing at it."""
    github_server.reset()
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_REPOSITORY", f"{OWNER}/{NAME}")
    monkeypatch.setenv("GITHUB_API_URL", github_server.url)
    yield github_server
