"""Test isolation: every test gets a temp HOME and HF cache, and service clients point only at our fakes.

The fake Hub starts at import time because huggingface_hub and datasets read HF_ENDPOINT when first imported.
Each fake's fixtures live in its own plugin module under tests/fakes/.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # so `tests.fakes` imports in plugin modules

os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = [
    "tests.fakes.openai_fixtures",
    "tests.fakes.gemini_fixtures",
    "tests.fakes.fake_llm",
    "tests.fakes.hub_fixtures",
    "tests.fakes.github_fixtures",
    "tests.model_fixtures",
    "tests.llama_server",
]

SECRET_VARS = ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
               "GITHUB_TOKEN", "GH_TOKEN", "OPENAI_BASE_URL", "GOOGLE_GEMINI_BASE_URL", "GITHUB_OUTPUT",
               "GITHUB_STEP_SUMMARY", "GITHUB_REPOSITORY", "GITHUB_SHA")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    """Temp HOME and caches; no real tokens or service URLs leak in from the environment."""
    yield isolate(tmp_path_factory.mktemp("home"), monkeypatch)


def isolate(home, monkeypatch) -> object:
    """Point HOME and the caches at ``home`` and remove tokens and duo's variables (also for wider fixtures)."""
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("HF_HOME", str(home / ".cache" / "huggingface"))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / ".cache" / "huggingface" / "hub"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / ".cache" / "huggingface" / "datasets"))
    monkeypatch.setenv("DUO_CACHE", str(home / ".cache" / "duo"))
    for var in SECRET_VARS:
        monkeypatch.delenv(var, raising=False)
    for var in [v for v in os.environ if v.startswith("DUO_") and v != "DUO_CACHE"]:
        monkeypatch.delenv(var)  # every duo flag falls back to DUO_<FLAG>: none may leak in from the shell
    return home
