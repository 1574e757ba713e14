"""What of a tracking URI reports, PR bodies and error lines may show (issue #22): never its credentials."""

from __future__ import annotations

import pytest

from pipeline.tracking.mlflow_run import shown


@pytest.mark.parametrize(("uri", "expected"), [
    ("https://bob:secret@mlflow.example.com:5000/base", "https://mlflow.example.com:5000/base"),
    ("postgresql://duo:pw@db.internal/mlflow", "postgresql://db.internal/mlflow"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("sqlite:////srv/duo/mlflow.db", "sqlite:////srv/duo/mlflow.db"),
    ("databricks", "databricks"),
])
def test_credentials_never_shown(uri, expected):
    assert shown(uri) == expected
    assert "secret" not in shown(uri) and "pw@" not in shown(uri)
