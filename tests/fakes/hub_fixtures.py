"""Fixtures for the fake hub server (filled in by its module)."""
