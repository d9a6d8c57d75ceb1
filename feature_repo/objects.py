"""The Feast objects of graphrec, built from the catalogue (feature_repo/catalog.py) by :func:`build_definitions`.

Per entity an Entity; per view a FileSource over the view's snapshot folder ``<offline_dir>/<view>/`` (the DuckDB
offline store reads every parquet file in it) and a FeatureView with an unbounded ttl (0), so every kept snapshot
stays joinable; per feature family a FeatureService, plus the ``graph_features`` service with every view; per
published model version (feature_repo/model_views.py) its two views and its feature service.

Nothing is built at import: feature_repo/definitions.py calls this for ``feast apply`` (Feast's scanner needs
module-level objects there), and featurestore/store.py calls it for graphrec's own apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.data_format import ParquetFormat
from feast.types import Array, ComplexFeastType, Float32, Int64, PrimitiveFeastType
from feast.value_type import ValueType as FeastValueType

from feature_repo.catalog import (
    CREATED_TIMESTAMP,
    ENTITIES,
    EVENT_TIMESTAMP,
    FAMILIES,
    GRAPH_FEATURES_SERVICE,
    VIEWS,
    EntitySpec,
    ValueType,
    ViewSpec,
)
from feature_repo.model_views import ModelViews

FEAST_DTYPES: dict[ValueType, PrimitiveFeastType | ComplexFeastType] = {
    ValueType.int64: Int64,
    ValueType.float32: Float32,
    ValueType.float32_list: Array(Float32),
    ValueType.int64_list: Array(Int64),
}
UNBOUNDED_TTL = timedelta(0)  # Feast: a ttl of 0 means feature values never expire


@dataclass(frozen=True)
class Definitions:
    """Every Feast object of the repo."""

    entities: tuple[Entity, ...]
    sources: tuple[FileSource, ...]
    views: tuple[FeatureView, ...]
    services: tuple[FeatureService, ...]

    def objects(self) -> list[Entity | FileSource | FeatureView | FeatureService]:
        """All objects, in the order Feast applies them."""
        return [*self.entities, *self.sources, *self.views, *self.services]


def family_service_name(family: str) -> str:
    """The name of the feature service of one feature family."""
    return f"{family}_features"


def _entity(spec: EntitySpec) -> Entity:
    return Entity(
        name=spec.name, join_keys=[spec.join_key], value_type=FeastValueType.INT64, description=spec.description
    )


def _source(spec: ViewSpec, offline_dir: Path) -> FileSource:
    return FileSource(
        name=spec.name,
        path=str(offline_dir.resolve() / spec.name),  # DuckDB reads every parquet file of the folder
        file_format=ParquetFormat(),
        timestamp_field=EVENT_TIMESTAMP,
        created_timestamp_column=CREATED_TIMESTAMP,
        description=f"Offline snapshots of {spec.name}.",
    )


def _view(spec: ViewSpec, entity: Entity, source: FileSource) -> FeatureView:
    return FeatureView(
        name=spec.name,
        entities=[entity],
        ttl=UNBOUNDED_TTL,
        schema=[Field(name=spec.entity.join_key, dtype=Int64)]
        + [Field(name=f.name, dtype=FEAST_DTYPES[f.dtype], description=f.description) for f in spec.features],
        source=source,
        online=True,
        description=spec.description,
        tags={"family": spec.family},
    )


def build_definitions(offline_dir: Path, published: list[ModelViews]) -> Definitions:
    """Build the Feast objects of every catalogue entity, view and service, and of every ``published`` model
    version, with offline sources under ``offline_dir``."""
    entities = {spec.name: _entity(spec) for spec in ENTITIES}
    sources = {spec.name: _source(spec, offline_dir) for spec in VIEWS}
    views = {spec.name: _view(spec, entities[spec.entity.name], sources[spec.name]) for spec in VIEWS}
    services = [
        FeatureService(
            name=GRAPH_FEATURES_SERVICE,
            features=list(views.values()),
            description="Every graph-derived feature view of the catalogue.",
        )
    ] + [
        FeatureService(
            name=family_service_name(family),
            features=[views[spec.name] for spec in VIEWS if spec.family == family],
            description=f"The {family} feature family.",
        )
        for family in FAMILIES
    ]
    for entry in published:  # per-model-version serving views (feature_repo/model_views.py)
        service_name, _, _ = entry.names
        version_views = []
        for spec in entry.view_specs():
            sources[spec.name] = _source(spec, offline_dir)
            views[spec.name] = _view(spec, entities[spec.entity.name], sources[spec.name])
            version_views.append(views[spec.name])
        services.append(
            FeatureService(
                name=service_name,
                features=version_views,
                description=f"Exactly the features {entry.model} version {entry.version} scores from.",
                tags={"model": entry.model, "version": str(entry.version)},
            )
        )
        for spec in entry.extra_specs():  # published with the version, outside what its scorer reads
            sources[spec.name] = _source(spec, offline_dir)
            views[spec.name] = _view(spec, entities[spec.entity.name], sources[spec.name])
    return Definitions(tuple(entities.values()), tuple(sources.values()), tuple(views.values()), tuple(services))


def module_names(definitions: Definitions) -> dict[str, object]:
    """Module-level names for Feast's repo scanner, which only looks at module attributes."""
    names: dict[str, object] = {f"{e.name}_entity": e for e in definitions.entities}
    names |= {f"{s.name}_source": s for s in definitions.sources}
    names |= {f"{v.name}_view": v for v in definitions.views}
    names |= {f"{s.name}_service": s for s in definitions.services}
    return names
