"""Fixtures for the fake openai server (filled in by its module)."""
