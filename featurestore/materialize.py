"""graphrec's materialization: the latest offline row of every entity into the online store, through Feast's own API.

``FeatureStore.materialize`` / ``materialize_incremental`` run the compute engine that feature_store.yaml names,
graphrec's (featurestore/engine.py): the same engine, and so the same bytes, registry intervals and kill-and-rerun
behaviour, as stock ``feast materialize`` in ``feature_repo/``. This module adds what graphrec's CLI wants on top:
a view never materialized starts at the epoch (also in an incremental run, where stock Feast would start a view with
ttl 0 one year back), a progress callback instead of Feast's tqdm bars, and a report of what each view wrote.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from feast import FeatureStore, FeatureView

from featurestore.engine import GraphrecComputeEngine, Progress, ViewResult
from featurestore.internals import batch_engine_of

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class MaterializeReport:
    """The outcome of one :func:`materialize` run."""

    online_store: str
    views: list[ViewResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        """Entity rows written, all views together."""
        return sum(v.rows for v in self.views)

    @property
    def rows_per_second(self) -> float:
        """Throughput of the whole run, reading and registry update included."""
        return self.rows / self.seconds if self.seconds else 0.0


def _views_to_materialize(store: FeatureStore, names: Sequence[str] | None) -> list[FeatureView]:
    registered = {fv.name: fv for fv in store.list_feature_views() if fv.online and getattr(fv, "enabled", True)}
    if names is None:
        return list(registered.values())
    unknown = [name for name in names if name not in registered]
    if unknown:
        raise ValueError(f"feature views {unknown} are not registered online views; registered: {sorted(registered)}")
    return [registered[name] for name in names]


def _quiet(_view: str, _done: int, _total: int) -> None:
    """The progress callback of a run without a display: the report says what was written."""


def _engine(store: FeatureStore) -> GraphrecComputeEngine:
    engine = batch_engine_of(store)
    if not isinstance(engine, GraphrecComputeEngine):
        raise ValueError(
            f"the Feast configuration names the {type(engine).__name__} compute engine; graphrec's materialize "
            f"reports through its own: set batch_engine: {{type: {GraphrecComputeEngine.__module__}."
            f"{GraphrecComputeEngine.__name__}}} in feature_store.yaml"
        )
    return engine


def materialize(
    store: FeatureStore,
    start: datetime | None = None,
    end: datetime | None = None,
    incremental: bool = False,
    views: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> MaterializeReport:
    """Write the latest row per entity with event time in [start, end] (default: the epoch to now; incremental:
    each view's last end, or the epoch if it has none, to ``end``) of the chosen registered views (default all) into
    the online store, with Feast's ``materialize`` / ``materialize_incremental`` and graphrec's compute engine."""
    if incremental and start is not None:
        raise ValueError("an incremental run starts each view where the last one ended: give no start")
    started = time.perf_counter()
    engine = _engine(store)
    chosen = _views_to_materialize(store, views)
    end = end or datetime.now(UTC)
    fresh = [fv.name for fv in chosen if not incremental or fv.most_recent_end_time is None]
    resumed = [fv.name for fv in chosen if fv.name not in fresh]
    # graphrec reports through its own display, not tqdm; Feast's own status lines ("Materializing 3 feature
    # views ...") are print()ed, and go to stderr so that stdout stays one JSON document under --json
    with engine.reporting(progress or _quiet) as results, contextlib.redirect_stdout(sys.stderr):
        if fresh:  # an empty list would mean every view to Feast
            store.materialize(start or EPOCH, end, feature_views=fresh)
        if resumed:
            store.materialize_incremental(end, feature_views=resumed)
    return MaterializeReport(store.config.online_store.type, results, time.perf_counter() - started)
