"""Fixtures for the fake github server (filled in by its module)."""
