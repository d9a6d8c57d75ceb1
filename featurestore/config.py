"""The Feast configuration of graphrec, built from Settings: shared by training, the registry and serving.

``feature_repo/feature_store.yaml`` stays the stock configuration (project, provider, DuckDB offline store, SQLite
online store, MLflow integration) for ``feast`` commands run in ``feature_repo/``. Here it is read and its paths, its
online store and its MLflow URI are replaced from Settings, so ``GRAPHREC_WORK_DIR``, ``GRAPHREC_ONLINE_STORE=redis``
and ``GRAPHREC_REDIS_URL`` take effect without editing it, and ``GRAPHREC_ENGINE=ray`` swaps in graphrec's engine on
Ray (featurestore/ray_engine.py); the rest, the ``batch_engine`` block naming graphrec's
compute engine (featurestore/engine.py) included, is kept as written. It lives outside ``training`` because serving
needs it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from feast import FeatureStore, RepoConfig

from featurestore.ray_engine import RAY_ENGINE_TYPE
from graphrec.settings import EngineKind, OnlineStoreKind, Settings

STOCK_CONFIG = "feature_store.yaml"
LOCAL_ENGINE: dict[str, Any] = {"type": "local"}
"""The ``batch_engine`` block of Feast's own local compute engine."""


def online_store_config(settings: Settings) -> dict[str, str]:
    """The Feast online store block for the configured kind."""
    if settings.online_store is OnlineStoreKind.redis:
        return {"type": "redis", "connection_string": settings.redis_url}
    return {"type": "sqlite", "path": str(settings.online_sqlite_path.resolve())}


def ray_engine_config(settings: Settings) -> dict[str, Any]:
    """The ``batch_engine`` block of graphrec's engine on Ray (featurestore/ray_engine.py), from ``settings``."""
    return {
        "type": RAY_ENGINE_TYPE,
        "ray_address": settings.ray_address,
        "num_cpus": settings.ray_num_cpus,
        "object_store_mb": settings.ray_object_store_mb,
    }


def config_dict(settings: Settings) -> dict[str, Any]:
    """The stock feature_store.yaml as a dict, with paths, online store and MLflow URI taken from ``settings``, and
    graphrec's engine on Ray as the compute engine when ``settings.engine`` is ``ray``."""
    raw = yaml.safe_load(os.path.expandvars((settings.feature_repo / STOCK_CONFIG).read_text()))
    raw["registry"] = {**raw["registry"], "path": str(settings.feast_registry_path.resolve())}
    raw["online_store"] = online_store_config(settings)
    raw["mlflow"] = {**raw.get("mlflow", {}), "tracking_uri": settings.mlflow_uri}
    if settings.engine is EngineKind.ray:
        raw["batch_engine"] = ray_engine_config(settings)
    return raw


def repo_config(settings: Settings, batch_engine: dict[str, Any] | None = None) -> RepoConfig:
    """The Feast RepoConfig of ``settings``; ``batch_engine`` replaces the configured compute engine block."""
    overrides = {} if batch_engine is None else {"batch_engine": batch_engine}
    return RepoConfig(**(config_dict(settings) | overrides), repo_path=settings.feature_repo.resolve())


def feature_store(settings: Settings, batch_engine: dict[str, Any] | None = None) -> FeatureStore:
    """A Feast FeatureStore for ``settings`` (its registry exists once the definitions have been applied). It
    materializes with graphrec's compute engine, as feature_store.yaml says, unless ``batch_engine`` names another
    (``LOCAL_ENGINE``: Feast's own, the baseline of the materialization tests and bench)."""
    return FeatureStore(config=repo_config(settings, batch_engine))


def write_cli_config(settings: Settings) -> Path:
    """Write the effective configuration to ``<work_dir>/feature_store.yaml`` for the stock ``feast`` CLI."""
    path = settings.work_dir / STOCK_CONFIG
    path.write_text(
        "# Written by graphrec (featurestore/config.py) from Settings: the stock feature_repo/feature_store.yaml\n"
        f"# with this work dir. Use: FEAST_FS_YAML_FILE_PATH={path.resolve()} \\\n"
        f"#   feast -c {settings.feature_repo.resolve()} ...\n" + yaml.safe_dump(config_dict(settings), sort_keys=False)
    )
    return path
