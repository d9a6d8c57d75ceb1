"""The Feast feature store of graphrec (configured from Settings in featurestore/config.py): apply the definitions,
read online, join offline. :func:`apply` also writes the effective configuration to ``<work_dir>/feature_store.yaml``
for the stock CLI: ``FEAST_FS_YAML_FILE_PATH=<work_dir>/feature_store.yaml feast -c feature_repo ...``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
from feast import Project
from feast.feature_view import DUMMY_ENTITY
from feast.repo_contents import RepoContents
from feast.repo_operations import extract_objects_for_apply_delete

from feature_repo.catalog import EVENT_TIMESTAMP, GRAPH_FEATURES_SERVICE, ITEM, USER, VIEWS, ViewSpec
from feature_repo.model_views import load_manifest
from feature_repo.objects import Definitions, build_definitions
from featurestore.config import feature_store, write_cli_config
from featurestore.offline import read_latest, snapshot_files, view_dir
from graphrec.settings import Settings


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
        view_dir(settings.offline_dir, spec).mkdir(parents=True, exist_ok=True)
    store = feature_store(settings)
    definitions = build_definitions(settings.offline_dir, load_manifest(settings.work_dir))
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


StoreSide = Literal["online", "offline"]


def view_values(
    settings: Settings, spec: ViewSpec, ids: np.ndarray, side: StoreSide, as_of: datetime | None = None
) -> pd.DataFrame:
    """One view's features for the entities ``ids``, one row each in that order (join-key column first): from the
    online store (``get_online_features``; an entity never materialized has None values), or the latest offline
    snapshot row per entity (event time <= ``as_of``; an entity absent from every snapshot has None values)."""
    key = spec.entity.join_key
    if side == "online":
        rows = [{key: int(entity)} for entity in ids]
        refs = [f"{spec.name}:{name}" for name in spec.feature_names]
        response = feature_store(settings).get_online_features(features=refs, entity_rows=rows).to_dict()
        return pd.DataFrame({key: np.asarray(ids, dtype=np.int64)} | {n: response[n] for n in spec.feature_names})
    if not snapshot_files(settings.offline_dir, spec):
        return pd.DataFrame({key: np.asarray(ids, dtype=np.int64)} | {n: [None] * len(ids) for n in spec.feature_names})
    latest = read_latest(settings.offline_dir, spec, as_of).set_index(key)[spec.feature_names]
    found = latest.reindex(np.asarray(ids, dtype=np.int64)).astype(object)
    return found.where(found.notna(), None).rename_axis(key).reset_index()


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
    unbuilt = [
        spec.name for spec in VIEWS if spec.name in view_names and not snapshot_files(settings.offline_dir, spec)
    ]
    if unbuilt:
        raise ValueError(f"feature views {unbuilt} have no offline snapshots under {settings.offline_dir}: build them")
    return store.get_historical_features(entity_df=entity_df, features=feature_service, full_feature_names=True).to_df()
