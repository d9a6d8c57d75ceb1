"""graphrec's fast materializer as a Feast compute engine, named in feature_repo/feature_store.yaml:

    batch_engine:
      type: featurestore.engine.GraphrecComputeEngine

Feast 0.67 loads the engine of ``batch_engine`` by dotted path, so stock ``feast materialize`` and ``feast
materialize-incremental`` run this one, and graphrec's own ``materialize`` (featurestore/materialize.py) reaches it
through ``FeatureStore.materialize``. Same online result as Feast's local engine, written far faster: per view, the
rows with ``start <= event_timestamp <= end`` are read from the view's parquet files (pyarrow), reduced to the latest
row per entity (latest event_timestamp, ties broken by ``created``), encoded column by column (encoding.py) and
written in large batches with the storage layout, bytes and overwrite rules of Feast's own SQLite or Redis store
(sqlite_writer.py, redis_writer.py). Readers stay stock Feast.

Everything it needs comes from Feast, not from graphrec's Settings: the view's schema (one int64 join key; int64,
float32 and float32-list features), its FileSource (a parquet file or folder in graphrec's snapshot layout, with
``event_timestamp`` and ``created`` columns, see offline.py) and the RepoConfig's online store. A view or online store
it cannot write (another source or type, an online store other than SQLite or Redis) fails before anything is
written, with a message naming it: such a repo configures ``batch_engine: local``, Feast's own engine.

Registry: Feast moves the views to MATERIALIZING before calling the engine (all views in one call:
``supports_batch``) and restores their states if it raises. The engine records every view's interval with
``apply_materialization`` itself (``applies_materialization``), only after every view is written, in one commit: a
run killed midway records nothing, and running it again rewrites the same window, leaving the online store exactly
as one clean run would.

Progress: Feast hands each task a tqdm builder, and the engine shows a bar per view with it (the stock CLI's
display). A caller with its own display attaches a callback with :meth:`GraphrecComputeEngine.reporting`, which also
collects what each view wrote. Each view's outcome is logged at INFO on this module's logger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pyarrow as pa
from feast import FeatureView, FileSource, RepoConfig
from feast.infra.common.materialization_job import MaterializationJob, MaterializationJobStatus, MaterializationTask
from feast.infra.compute_engines.base import ComputeEngine
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel
from feast.utils import make_tzaware
from pydantic import StrictInt

from feature_repo.catalog import CREATED_TIMESTAMP, EVENT_TIMESTAMP, EntitySpec, FeatureSpec, ValueType, ViewSpec
from feature_repo.objects import FEAST_DTYPES
from featurestore.encoding import OnlineBatch, encode_batch
from featurestore.offline import KeyRange, arrow_schema, latest_rows, parquet_files, read_files
from featurestore.redis_writer import RedisWriter
from featurestore.sqlite_writer import SqliteWriter

ENGINE_TYPE = "featurestore.engine.GraphrecComputeEngine"
BATCH_ROWS = 100_000
CATALOGUE_TYPES = {feast_type: value_type for value_type, feast_type in FEAST_DTYPES.items()}

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""Called as ``progress(view_name, rows_written, rows_total)`` after each batch."""


class OnlineWriter(Protocol):
    """Bulk writer into one kind of Feast online store (sqlite_writer.py, redis_writer.py)."""

    def prepare(self, view: FeatureView) -> None: ...

    def write(self, view: FeatureView, batch: OnlineBatch) -> None: ...

    def close(self) -> None: ...


WRITERS: dict[str, Callable[[RepoConfig], OnlineWriter]] = {"sqlite": SqliteWriter, "redis": RedisWriter}


class UnsupportedByEngine(ValueError):
    """A view or online store graphrec's engine cannot write; Feast's local engine (``batch_engine: local``) can."""


@dataclass
class ViewResult:
    """What one view's materialization covered and wrote."""

    name: str
    start: datetime
    end: datetime
    rows: int = 0
    seconds: float = 0.0


class GraphrecComputeEngineConfig(FeastConfigBaseModel):
    """The ``batch_engine`` block of feature_store.yaml (Feast finds it by the engine's name + ``Config``)."""

    type: Literal["featurestore.engine.GraphrecComputeEngine"] = ENGINE_TYPE
    batch_rows: StrictInt = BATCH_ROWS
    """Entity rows encoded and written per batch (bounds the memory of the encoded bytes)."""


def _unsupported(view: FeatureView, reason: str) -> UnsupportedByEngine:
    return UnsupportedByEngine(
        f"feature view {view.name!r}: {reason}; graphrec's compute engine cannot materialize it "
        "(configure batch_engine: local in feature_store.yaml to use Feast's own engine)"
    )


def view_spec_of(view: FeatureView) -> ViewSpec:
    """The layout of a registered Feast view as a catalogue ViewSpec (join key, typed features), checked to be one
    this engine writes; raise :class:`UnsupportedByEngine` naming what is not."""
    source = view.batch_source
    if not isinstance(source, FileSource):
        raise _unsupported(view, f"its source is a {type(source).__name__}, not a FileSource of parquet files")
    if (source.timestamp_field, source.created_timestamp_column) != (EVENT_TIMESTAMP, CREATED_TIMESTAMP):
        expected = f"{EVENT_TIMESTAMP!r} and {CREATED_TIMESTAMP!r}"
        raise _unsupported(view, f"its source's timestamp columns are not {expected} (offline.py's layout)")
    if source.field_mapping:
        raise _unsupported(view, "its source has a field mapping")
    keys = view.entity_columns
    if len(keys) != 1 or CATALOGUE_TYPES.get(keys[0].dtype) is not ValueType.int64:
        raise _unsupported(view, f"its entity columns {[(k.name, str(k.dtype)) for k in keys]} are not one int64 key")
    untyped = [f"{f.name}: {f.dtype}" for f in view.features if f.dtype not in CATALOGUE_TYPES]
    if untyped:
        raise _unsupported(view, f"features {untyped} are not int64, float32 or float32 arrays")
    return ViewSpec(
        name=view.name,
        entity=EntitySpec(name=view.entities[0], join_key=keys[0].name, description=""),
        family=view.tags.get("family", ""),
        features=tuple(FeatureSpec(f.name, CATALOGUE_TYPES[f.dtype], f.description) for f in view.features),
        description=view.description,
    )


def _utc(moment: datetime) -> datetime:
    return make_tzaware(moment).astimezone(UTC)


def _key_order(keys: np.ndarray) -> np.ndarray:
    """Row order of ascending serialized entity key: its 8 little-endian value bytes compared as bytes."""
    return np.argsort(np.ascontiguousarray(keys, dtype="<i8").view(">u8"), kind="stable")


def latest_in_key_order(
    files: list[Path],
    spec: ViewSpec,
    start: datetime | None,
    end: datetime | None,
    keys: KeyRange | None = None,
) -> pa.Table:
    """The latest row per entity (join key in ``keys``, default all) with ``start <= event_timestamp <= end`` of a
    view's parquet files, in serialized-key order."""
    rows = read_files(files, arrow_schema(spec), start, end, keys)
    chosen = latest_rows(rows, spec.entity.join_key)
    return rows.take(pa.array(chosen[_key_order(rows[spec.entity.join_key].to_numpy()[chosen])]))


def encoded_batches(spec: ViewSpec, latest: pa.Table, key_version: int, batch_rows: int) -> Iterator[OnlineBatch]:
    """``latest``'s rows encoded for the online store, ``batch_rows`` at a time."""
    for offset in range(0, latest.num_rows, batch_rows):
        yield encode_batch(spec, latest.slice(offset, batch_rows), key_version)


class GraphrecComputeEngine(ComputeEngine):
    """Materializes views into a SQLite or Redis online store with Feast's exact bytes, in bulk (module docstring)."""

    def __init__(self, *, batch_rows: int = BATCH_ROWS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch_rows = batch_rows
        self.progress: Progress | None = None
        self.results: list[ViewResult] | None = None  # collected only within reporting()

    @property
    def supports_batch(self) -> bool:
        """Feast hands over every view of a run in one call, so the intervals can be recorded together."""
        return True

    @property
    def applies_materialization(self) -> bool:
        """The engine records the intervals itself, after every view is written (module docstring)."""
        return True

    def update(
        self,
        project: str,
        views_to_delete: Sequence[Any],
        views_to_keep: Sequence[Any],
        entities_to_delete: Sequence[Any],
        entities_to_keep: Sequence[Any],
    ) -> None:
        """Nothing to prepare on ``feast apply``: the online store's own update creates its tables."""

    def teardown_infra(self, project: str, fvs: Sequence[Any], entities: Sequence[Any]) -> None:
        """Nothing to tear down: the engine keeps no infrastructure of its own."""

    @contextmanager
    def reporting(self, progress: Progress | None = None) -> Iterator[list[ViewResult]]:
        """Within the block, call ``progress`` after each batch instead of drawing tqdm bars, and collect each
        materialized view's :class:`ViewResult` into the yielded list."""
        results: list[ViewResult] = []
        self.progress, self.results = progress, results
        try:
            yield results
        finally:
            self.progress, self.results = None, None

    def materialize(
        self,
        registry: BaseRegistry,
        tasks: MaterializationTask | list[MaterializationTask],
        **kwargs: Any,
    ) -> list[MaterializationJob]:
        """Write every task's view, then record all their intervals in one registry commit; raise on any failure
        (Feast then restores the views' states) so that a failed run records nothing."""
        tasks = [tasks] if isinstance(tasks, MaterializationTask) else list(tasks)
        kind = self.repo_config.online_store.type
        if kind not in WRITERS:
            raise UnsupportedByEngine(
                f"graphrec's compute engine writes the {sorted(WRITERS)} online stores, not {kind!r} "
                "(configure batch_engine: local in feature_store.yaml to use Feast's own engine)"
            )
        specs = [view_spec_of(task.feature_view) for task in tasks]  # every view checked before any is written
        logger.info("materializing %d feature view(s) into the %s online store", len(tasks), kind)
        writer = WRITERS[kind](self.repo_config)
        try:
            results = self._write_views(writer, tasks, specs)
        finally:
            writer.close()
        if self.results is not None:
            self.results.extend(results)
        for task in tasks:
            view, start, end = task.feature_view, task.start_time, task.end_time
            registry.apply_materialization(view, task.project, start, end, commit=False)
        registry.commit()
        return [
            LocalMaterializationJob(  # Feast's plain job record (id, status), not its engine
                job_id=f"{task.feature_view.name}-{task.start_time}-{task.end_time}",
                status=MaterializationJobStatus.SUCCEEDED,
            )
            for task in tasks
        ]

    def _source_files(self, view: FeatureView) -> list[Path]:
        """The parquet files of a view's FileSource: the file itself, or a folder's files oldest name first."""
        path = Path(FileSource.get_uri_for_file_path(self.repo_config.repo_path, view.batch_source.path))
        return [path] if path.is_file() else parquet_files(path)

    def _write_views(
        self, writer: OnlineWriter, tasks: Sequence[MaterializationTask], specs: Sequence[ViewSpec]
    ) -> list[ViewResult]:
        """Write every task's view, one after another, in this process (featurestore/ray_engine.py spreads the
        reading and encoding over a Ray cluster instead)."""
        return [self._write_view(writer, task, spec) for task, spec in zip(tasks, specs, strict=True)]

    def _window(self, task: MaterializationTask) -> tuple[ViewResult, tuple[datetime | None, datetime | None]]:
        """The task's (empty) result and the event-time window to read, checked."""
        view = task.feature_view
        if not task.only_latest:
            raise _unsupported(view, "the task asks for every row, not the latest per entity")
        result = ViewResult(view.name, _utc(task.start_time), _utc(task.end_time))
        if result.start > result.end:
            raise ValueError(f"feature view {view.name!r}: window start {result.start} is after its end {result.end}")
        return result, ((None, None) if task.disable_event_timestamp else (result.start, result.end))

    def _write_view(self, writer: OnlineWriter, task: MaterializationTask, spec: ViewSpec) -> ViewResult:
        """Read the task's window, keep the latest row per entity in key order, write it in batches."""
        started = time.perf_counter()
        result, window = self._window(task)
        latest = latest_in_key_order(self._source_files(task.feature_view), spec, *window)
        version = self.repo_config.entity_key_serialization_version
        self._write_batches(writer, task, encoded_batches(spec, latest, version, self.batch_rows), latest.num_rows)
        result.rows = latest.num_rows
        return self._finish(result, started)

    def _write_batches(
        self, writer: OnlineWriter, task: MaterializationTask, batches: Iterable[OnlineBatch], total: int
    ) -> None:
        """Write a view's encoded batches (``total`` rows in all), reporting progress after each."""
        view = task.feature_view
        writer.prepare(view)
        written = 0
        with self._progress_of(task, total) as progress:
            for batch in batches:
                writer.write(view, batch)
                written += len(batch)
                progress(view.name, written, total)

    @staticmethod
    def _finish(result: ViewResult, started: float) -> ViewResult:
        """Stamp the view's wall time and log its outcome."""
        result.seconds = time.perf_counter() - started
        logger.info(
            "%s: %d rows from %s to %s in %.2fs", result.name, result.rows, result.start, result.end, result.seconds
        )
        return result

    @contextmanager
    def _progress_of(self, task: MaterializationTask, total: int) -> Iterator[Progress]:
        """The attached progress callback, else a bar from the task's tqdm builder (Feast's display), else none."""
        if self.progress is not None:
            yield self.progress
        elif task.tqdm_builder is None:
            yield lambda _view, _done, _total: None
        else:
            with task.tqdm_builder(total) as bar:
                yield lambda _view, done, _total: bar.update(done - bar.n)
