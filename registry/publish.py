"""Publish a registered version's serving features to Feast: offline snapshot, per-version views, materialization.

After :func:`publish_version` the version satisfies serving.contract: its feature service and views are applied, its
features are materialized into the online store, and its tags name them. With them it publishes what its
explanations and /v1/recommend's seen-item exclusion read (registry/explain_tables.py): a ``_seen`` view of each
user's training interactions, and the entity catalogue logged with the run, its files' SHA-256 in a version tag.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from feature_repo.catalog import CREATED_TIMESTAMP, EVENT_TIMESTAMP, ValueType
from feature_repo.model_views import ModelViews, load_manifest, save_manifest, seen_view_name
from graphrec.settings import Settings
from registry.explain_tables import build_catalogue, run_dataset, seen_items
from registry.runs import EXPORT_DIR, ITEM_TABLE, USER_TABLE
from serving.catalogue import Catalogue
from serving.contract import (
    ACTIVITY_TERCILE,
    CATALOGUE_ARTIFACT,
    CATALOGUE_TAG,
    FEATURE_SERVICE_TAG,
    ITEM_VIEW_TAG,
    SEEN_FEATURE,
    SEEN_VIEW_TAG,
    USER_VIEW_TAG,
)
from serving.pyfunc_model import ITEM_ID, USER_ID


def value_type(column: pd.Series) -> ValueType:
    """The catalogue value type of an exported feature column: integer arrays (node or item ids) are int64 lists,
    exact for any id, other arrays float32 lists."""
    first = column.iloc[0]
    if isinstance(first, (list, tuple, np.ndarray)):
        return ValueType.int64_list if np.issubdtype(np.asarray(first).dtype, np.integer) else ValueType.float32_list
    if pd.api.types.is_integer_dtype(column):
        return ValueType.int64
    return ValueType.float32


def _features(frame: pd.DataFrame, key: str) -> dict[str, str]:
    return {name: value_type(frame[name]).value for name in frame.columns if name != key}


def _stamped(frame: pd.DataFrame, moment: datetime) -> pd.DataFrame:
    stamped = frame.copy()
    stamped[EVENT_TIMESTAMP] = pd.Timestamp(moment)
    stamped[CREATED_TIMESTAMP] = pd.Timestamp(moment)
    return stamped


def download_export(run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The serving feature tables a training run logged."""
    folder = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=EXPORT_DIR))
    return pd.read_parquet(folder / USER_TABLE), pd.read_parquet(folder / ITEM_TABLE)


def log_catalogue(client: MlflowClient, run_id: str, catalogue: Catalogue) -> dict[str, str]:
    """Log the catalogue's files under the run's ``CATALOGUE_ARTIFACT`` folder; returns file name -> SHA-256."""
    with tempfile.TemporaryDirectory() as scratch:
        paths = catalogue.save(Path(scratch))
        client.log_artifacts(run_id, scratch, CATALOGUE_ARTIFACT)
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}


def publish_frames(
    settings: Settings,
    model_name: str,
    version: int,
    users: pd.DataFrame,
    items: pd.DataFrame,
    seen: pd.DataFrame,
    materialize_features: bool = True,
) -> ModelViews:
    """Write the version's user, item and seen-items tables as offline snapshots of its views, list the views in the
    manifest, apply them and (unless told not to) materialize them; value types are inferred from the columns."""
    from featurestore.config import feature_store
    from featurestore.materialize import materialize
    from featurestore.offline import write_snapshot
    from featurestore.store import apply

    seen_features = {SEEN_FEATURE: ValueType.int64_list.value, ACTIVITY_TERCILE: ValueType.int64.value}
    entry = ModelViews(model_name, int(version), _features(users, USER_ID), _features(items, ITEM_ID), seen_features)
    user_spec, item_spec = entry.view_specs()
    (seen_spec,) = entry.extra_specs()
    moment = datetime.now(UTC).replace(microsecond=0)
    write_snapshot(settings.offline_dir, user_spec, _stamped(users, moment))
    write_snapshot(settings.offline_dir, item_spec, _stamped(items, moment))
    write_snapshot(settings.offline_dir, seen_spec, _stamped(seen, moment))
    others = [e for e in load_manifest(settings.work_dir) if (e.model, e.version) != (entry.model, entry.version)]
    save_manifest(settings.work_dir, others + [entry])
    apply(settings)
    if materialize_features:
        materialize(feature_store(settings), views=[user_spec.name, item_spec.name, seen_spec.name])
    return entry


def publish_version(
    settings: Settings, model_name: str, version: int, run_id: str, materialize_features: bool = True
) -> ModelViews:
    """Write, apply and (unless told not to) materialize the version's feature views, then tag the version."""
    client = MlflowClient()
    run = client.get_run(run_id)
    dataset = run_dataset(settings, run)
    users, items = download_export(run_id)
    seen = seen_items(dataset, run)
    entry = publish_frames(settings, model_name, version, users, items, seen, materialize_features)
    digests = log_catalogue(client, run_id, build_catalogue(settings, dataset))
    service, user_view, item_view = entry.names
    tags = {
        FEATURE_SERVICE_TAG: service,
        USER_VIEW_TAG: user_view,
        ITEM_VIEW_TAG: item_view,
        SEEN_VIEW_TAG: seen_view_name(model_name, version),
        CATALOGUE_TAG: json.dumps(digests, sort_keys=True),
    }
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(version), key, value)
    return entry
