"""A tiny servable world for serving tests and benchmarks, built without the training code.

:func:`publish_dot_version` makes a "dot" :class:`ScorerModel` (``embedding`` on both sides, optional item ``bias``),
logs it with ``registry.packaging`` into the settings' MLflow store, registers it, writes its per-version feature views
(Feast Entity / FileSource parquet / FeatureView, named by ``feature_repo.model_views.version_view_names``) together
with the shared ``item_graph_stats`` view, applies and materializes them with Feast's own API, tags the version with
the contract tags and, optionally, moves an alias to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import mlflow
import numpy as np
import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.data_format import ParquetFormat
from feast.types import Array, Float32, Int64
from feast.value_type import ValueType as FeastValueType
from mlflow import MlflowClient

from feature_repo.catalog import CREATED_TIMESTAMP, EVENT_TIMESTAMP, ITEM, ITEM_GRAPH_STATS, USER, EntitySpec
from feature_repo.model_views import version_view_names
from featurestore.config import feature_store
from graphrec.settings import Settings
from registry.packaging import log_scorer_model, register_model_version, scorer_model
from registry.tracking import ensure_experiment
from serving.binding import BindingManager
from serving.contract import CHAMPION, FEATURE_SERVICE_TAG, ITEM_VIEW_TAG, MODEL_KIND_TAG, USER_VIEW_TAG
from serving.pyfunc_model import ITEM_ID, USER_ID, ScorerModel

EXPERIMENT = "serving-tests"
UNBOUNDED_TTL = timedelta(0)


@dataclass(frozen=True)
class PublishedVersion:
    """What a test needs to know about one published version."""

    name: str
    version: str
    model: ScorerModel
    users: pd.DataFrame  # user_id, embedding
    items: pd.DataFrame  # item_id, embedding, bias
    popularity: pd.DataFrame  # item_id, popularity


def dot_tables(
    n_users: int, n_items: int, dim: int, seed: int, item_ids: np.ndarray | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random user and item feature tables of a dot model (float32 embeddings, item bias)."""
    rng = np.random.default_rng(seed)
    item_ids = np.arange(n_items, dtype=np.int64) if item_ids is None else item_ids
    user_embeddings = list(rng.normal(size=(n_users, dim)).astype(np.float32))
    users = pd.DataFrame({USER_ID: np.arange(n_users, dtype=np.int64), "embedding": user_embeddings})
    items = pd.DataFrame(
        {
            ITEM_ID: item_ids,
            "embedding": list(rng.normal(size=(len(item_ids), dim)).astype(np.float32)),
            "bias": rng.normal(size=len(item_ids)).astype(np.float32),
        }
    )
    return users, items


def popularity_table(item_ids: np.ndarray, seed: int) -> pd.DataFrame:
    """The shared item_graph_stats table: every catalogue feature, popularity power-law distributed."""
    rng = np.random.default_rng(seed + 1)
    n = len(item_ids)
    return pd.DataFrame(
        {
            ITEM_ID: item_ids,
            "popularity": rng.zipf(1.5, size=n).clip(max=10_000).astype(np.int64),
            "kg_degree": rng.integers(1, 20, size=n).astype(np.int64),
            "relation_histogram": list(np.full((n, 2), 0.5, dtype=np.float32)),
            "mean_neighbor_transh": list(rng.normal(size=(n, 4)).astype(np.float32)),
        }
    )


def _entity(spec: EntitySpec) -> Entity:
    return Entity(name=spec.name, join_keys=[spec.join_key], value_type=FeastValueType.INT64)


def _view(
    settings: Settings, name: str, entity: Entity, key: str, frame: pd.DataFrame, moment: datetime
) -> FeatureView:
    """Write ``frame`` as the view's parquet snapshot and define the view over it."""
    folder = settings.offline_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    stamped = frame.assign(**{EVENT_TIMESTAMP: pd.Timestamp(moment), CREATED_TIMESTAMP: pd.Timestamp(moment)})
    stamped.to_parquet(folder / f"{moment:%Y%m%dT%H%M%S%f}.parquet", index=False)
    types = {
        "embedding": Array(Float32),
        "bias": Float32,
        "relation_histogram": Array(Float32),
        "mean_neighbor_transh": Array(Float32),
        "popularity": Int64,
        "kg_degree": Int64,
    }
    source = FileSource(
        name=name,
        path=str(folder.resolve()),
        file_format=ParquetFormat(),
        timestamp_field=EVENT_TIMESTAMP,
        created_timestamp_column=CREATED_TIMESTAMP,
    )
    schema = [Field(name=key, dtype=Int64)] + [Field(name=c, dtype=types[c]) for c in frame.columns if c != key]
    return FeatureView(name=name, entities=[entity], ttl=UNBOUNDED_TTL, schema=schema, source=source, online=True)


def publish_features(
    settings: Settings,
    name: str,
    version: str,
    users: pd.DataFrame,
    items: pd.DataFrame,
    popularity: pd.DataFrame | None,
) -> None:
    """Apply and materialize the version's user/item views (and item_graph_stats when given) with Feast's API."""
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    user_entity, item_entity = _entity(USER), _entity(ITEM)
    service, user_view, item_view = version_view_names(name, version)
    views = [
        _view(settings, user_view, user_entity, USER_ID, users, moment),
        _view(settings, item_view, item_entity, ITEM_ID, items, moment),
    ]
    if popularity is not None:
        views.append(_view(settings, ITEM_GRAPH_STATS.name, item_entity, ITEM_ID, popularity, moment))
    store = feature_store(settings)
    store.apply([user_entity, item_entity, *views, FeatureService(name=service, features=views[:2])])
    store.materialize(moment - timedelta(days=1), moment + timedelta(seconds=1), feature_views=[v.name for v in views])


def publish_dot_version(
    settings: Settings,
    users: pd.DataFrame,
    items: pd.DataFrame,
    popularity: pd.DataFrame | None = None,
    alias: str | None = CHAMPION,
    item_bias: bool = True,
) -> PublishedVersion:
    """Log, register, publish features for, tag and (optionally) alias one version of a dot model."""
    name = settings.registered_model_name
    item_table = items if item_bias else items.drop(columns=["bias"])
    model = scorer_model("dot", {"item_bias": item_bias}, users, item_table)
    experiment_id = ensure_experiment(settings, EXPERIMENT)
    with mlflow.start_run(experiment_id=experiment_id):
        uri = log_scorer_model(model, users, item_table)
    version = str(register_model_version(uri, name, {}).version)
    publish_features(settings, name, version, users, item_table, popularity)
    client = MlflowClient()
    service, user_view, item_view = version_view_names(name, version)
    tags = {FEATURE_SERVICE_TAG: service, USER_VIEW_TAG: user_view, ITEM_VIEW_TAG: item_view, MODEL_KIND_TAG: "dot"}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if alias is not None:
        client.set_registered_model_alias(name, alias, version)
    popularity = popularity if popularity is not None else pd.DataFrame()
    return PublishedVersion(name, version, model, users, item_table, popularity)


def count_refreshes(manager: BindingManager) -> Callable[[], int]:
    """Wrap ``manager.refresh`` (on the instance) so every call is counted; returns the counter's reader."""
    calls = 0
    refresh = manager.refresh

    def counted(force: bool = False) -> None:
        nonlocal calls
        calls += 1
        refresh(force)

    manager.refresh = counted  # type: ignore[method-assign]
    return lambda: calls
