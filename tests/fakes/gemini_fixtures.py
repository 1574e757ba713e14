"""Fixtures for the fake gemini server (filled in by its module)."""
