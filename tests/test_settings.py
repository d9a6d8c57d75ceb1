"""One settings object: environment overrides with the GRAPHREC_ prefix; derived paths live under work_dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from graphrec.settings import OnlineStoreKind, Settings


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GRAPHREC_WORK_DIR", str(tmp_path))
    monkeypatch.setenv("GRAPHREC_ONLINE_STORE", "redis")
    settings = Settings()
    assert settings.work_dir == tmp_path and settings.online_store is OnlineStoreKind.redis
    assert settings.mlflow_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    for path in (settings.graphs_dir, settings.offline_dir, settings.online_sqlite_path):
        assert path.is_relative_to(tmp_path)


def test_explicit_tracking_uri_wins(tmp_path: Path) -> None:
    assert Settings(mlflow_tracking_uri="http://127.0.0.1:5000").mlflow_uri == "http://127.0.0.1:5000"


def test_bad_value_is_named() -> None:
    with pytest.raises(ValueError, match="online_store"):
        Settings(online_store="cassandra")


def test_importing_packages_creates_nothing(tmp_path: Path) -> None:
    code = "import graphrec.settings, cli.main, training.data.load, training.graphs.build"
    env = {"GRAPHREC_WORK_DIR": str(tmp_path / "w"), "PATH": ""}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, env=env)
    assert not (tmp_path / "w").exists()


def test_settings_round_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What ``graphrec serve --workers`` exports is what each worker's ``Settings()`` reads back, secrets included."""
    from graphrec.environment import settings_environment

    original = Settings(
        work_dir=tmp_path,
        online_store=OnlineStoreKind.redis,
        serving_admin_token="s3cret",
        serving_challenger_share=0.25,
        serving_api_docs=False,
        registered_model_name="graphrec-other",
    )
    for name in list(os.environ):
        if name.startswith("GRAPHREC_"):
            monkeypatch.delenv(name)
    for name, value in settings_environment(original).items():
        monkeypatch.setenv(name, value)
    restored = Settings(_env_file=None)
    assert restored.serving_admin_token is not None
    assert restored.serving_admin_token.get_secret_value() == "s3cret"
    assert restored.model_dump(exclude={"serving_admin_token"}) == original.model_dump(exclude={"serving_admin_token"})
