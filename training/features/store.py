"""The Feast feature store of graphrec, configured from Settings: apply the definitions, read online, join offline.

``feature_repo/feature_store.yaml`` stays the stock configuration (project, provider, DuckDB offline store, SQLite
online store, MLflow integration) for ``feast`` commands run in ``feature_repo/``. Here it is read and its paths, its
online store and its MLflow URI are replaced from Settings, so ``GRAPHREC_WORK_DIR``, ``GRAPHREC_ONLINE_STORE=redis``
and ``GRAPHREC_REDIS_URL`` take effect without editing it. :func:`apply` also writes that effective configuration to
``<work_dir>/feature_store.yaml`` for the stock CLI: ``FEAST_FS_YAML_FILE_PATH=<work_dir>/feature_store.yaml feast -c
feature_repo ...``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from feast import FeatureStore, Project, RepoConfig
from feast.feature_view import DUMMY_ENTITY
from feast.repo_contents import RepoContents
from feast.repo_operations import extract_objects_for_apply_delete

from feature_repo.catalog import EVENT_TIMESTAMP, GRAPH_FEATURES_SERVICE, ITEM, USER, VIEWS
from feature_repo.definitions import Definitions, build_definitions
from graphrec.settings import OnlineStoreKind, Settings
from training.features.offline import snapshot_files, view_dir

STOCK_CONFIG = "feature_store.yaml"


def online_store_config(settings: Settings) -> dict[str, str]:
    """The Feast online store block for the configured kind."""
    if settings.online_store is OnlineStoreKind.redis:
        return {"type": "redis", "connection_string": settings.redis_url}
    return {"type": "sqlite", "path": str(settings.online_sqlite_path.resolve())}


def config_dict(settings: Settings) -> dict[str, Any]:
    """The stock feature_store.yaml as a dict, with paths, online store and MLflow URI taken from ``settings``."""
    raw = yaml.safe_load(os.path.expandvars((settings.feature_repo / STOCK_CONFIG).read_text()))
    raw["registry"] = {**raw["registry"], "path": str(settings.feast_registry_path.resolve())}
    raw["online_store"] = online_store_config(settings)
    raw["mlflow"] = {**raw.get("mlflow", {}), "tracking_uri": settings.mlflow_uri}
    return raw


def repo_config(settings: Settings) -> RepoConfig:
    """The Feast RepoConfig of ``settings``."""
    return RepoConfig(**config_dict(settings), repo_path=settings.feature_repo.resolve())


def feature_store(settings: Settings) -> FeatureStore:
    """A Feast FeatureStore for ``settings`` (its registry exists once :func:`apply` has run)."""
    return FeatureStore(config=repo_config(settings))


def write_cli_config(settings: Settings) -> Path:
    """Write the effective configuration to ``<work_dir>/feature_store.yaml`` for the stock ``feast`` CLI."""
    path = settings.work_dir / STOCK_CONFIG
    path.write_text(
        "# Written by graphrec (training/features/store.py) from Settings: the stock feature_repo/feature_store.yaml\n"
        f"# with this work dir. Use: FEAST_FS_YAML_FILE_PATH={path.resolve()} \\\n"
        f"#   feast -c {settings.feature_repo.resolve()} ...\n"
        + yaml.safe_dump(config_dict(settings), sort_keys=False)
    )
    return path


def _repo_contents(project: str, definitions: Definitions) -> RepoContents:
    """What Feast's ``parse_repo`` finds in feature_repo/ (it always adds the dummy entity of entity-less views)."""
    return RepoContents(
        projects=[Project(name=project)],
        data_sources=list(definitions.sources),
        feature_views=list(definitions.views),
        on_demand_feature_views=[],
        stream_feature_views=[],
        label_views=[],
        entities=[*definitions.entities, DUMMY_ENTITY],
        feature_services=list(definitions.services),
        permissions=[],
    )


def apply(settings: Settings) -> Definitions:
    """Register the catalogue's Feast objects (what ``feast apply`` does with feature_repo/definitions.py, for these
    settings): create or update them, delete registered objects no longer defined, create online tables, the work
    dir and the views' offline folders, and write the CLI config. Returns the applied definitions."""
    for spec in VIEWS:
        view_dir(settings, spec).mkdir(parents=True, exist_ok=True)
    store = feature_store(settings)
    definitions = build_definitions(settings)
    repo = _repo_contents(store.project, definitions)
    _, to_delete, _, _ = extract_objects_for_apply_delete(store.project, store.registry, repo)
    store.apply([*repo.projects, *repo.entities, *definitions.objects()], objects_to_delete=to_delete, partial=False)
    write_cli_config(settings)
    return definitions


def online_features(settings: Settings, user_id: int | None = None, item_id: int | None = None) -> dict[str, Any]:
    """Online values of every catalogue feature of the given user and/or item, keyed ``<view>__<feature>``
    (missing entities give None values)."""
    keys = {name: value for name, value in ((USER.join_key, user_id), (ITEM.join_key, item_id)) if value is not None}
    if not keys:
        raise ValueError("give a user_id, an item_id or both")
    refs = [f"{spec.name}:{name}" for spec in VIEWS if spec.entity.join_key in keys for name in spec.feature_names]
    response = feature_store(settings).get_online_features(features=refs, entity_rows=[keys], full_feature_names=True)
    return {name: values[0] for name, values in response.to_dict().items()}


def training_set(settings: Settings, entity_df: pd.DataFrame, service: str = GRAPH_FEATURES_SERVICE) -> pd.DataFrame:
    """Point-in-time join of ``entity_df`` (join keys of the service's entities and ``event_timestamp``) with the
    service's features, columns named ``<view>__<feature>``; inside an active MLflow run Feast tags the run."""
    store = feature_store(settings)
    feature_service = store.get_feature_service(service)
    view_names = {projection.name for projection in feature_service.feature_view_projections}
    needed = sorted({spec.entity.join_key for spec in VIEWS if spec.name in view_names} | {EVENT_TIMESTAMP})
    missing = [column for column in needed if column not in entity_df.columns]
    if missing:
        raise ValueError(f"entity_df lacks column(s) {missing} needed by feature service {service!r} (needs {needed})")
    unbuilt = [spec.name for spec in VIEWS if spec.name in view_names and not snapshot_files(settings, spec)]
    if unbuilt:
        raise ValueError(f"feature views {unbuilt} have no offline snapshots under {settings.offline_dir}: build them")
    return store.get_historical_features(entity_df=entity_df, features=feature_service, full_feature_names=True).to_df()
