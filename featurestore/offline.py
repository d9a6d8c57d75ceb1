"""Offline feature snapshots: parquet files under ``<offline_dir>/<view>/`` (``Settings.offline_dir``), one per
build, older ones kept.

A snapshot has exactly the catalogue's columns for its view: the entity join key (int64, no nulls), ``event_timestamp``
and ``created`` (timestamp[us, UTC], no nulls), then the features in catalogue order: int64 (no nulls), float32 (nulls
and NaN allowed: Feast serves them as missing), float32_list (list<float32>) and int64_list (list<int64>: id arrays,
exact for any id below 2**63), lists with no null lists or elements, every row of one snapshot the same length. A
(join key, event_timestamp) pair appears at most once per snapshot.

File names carry the snapshot's latest event time and created time (``event-<t>__created-<t>.parquet``, UTC); a file
is written under a hidden temporary name and then linked into place, so readers never see half a file and an existing
snapshot is never replaced.
"""

from __future__ import annotations

import functools
import operator
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from feature_repo.catalog import CREATED_TIMESTAMP, EVENT_TIMESTAMP, ValueType, ViewSpec

SNAPSHOT_SUFFIX = ".parquet"
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
ARROW_TYPES = {
    ValueType.int64: pa.int64(),
    ValueType.float32: pa.float32(),
    ValueType.float32_list: pa.list_(pa.float32()),
    ValueType.int64_list: pa.list_(pa.int64()),
}


class SnapshotError(ValueError):
    """A frame does not match its view's catalogue spec; the message names the view and the column."""


def arrow_schema(spec: ViewSpec) -> pa.Schema:
    """The canonical schema of a view's snapshot files."""
    fields = [
        pa.field(spec.entity.join_key, pa.int64()),
        pa.field(EVENT_TIMESTAMP, TIMESTAMP_TYPE),
        pa.field(CREATED_TIMESTAMP, TIMESTAMP_TYPE),
    ]
    return pa.schema(fields + [pa.field(f.name, ARROW_TYPES[f.dtype]) for f in spec.features])


def view_dir(offline_dir: Path, spec: ViewSpec) -> Path:
    """The folder holding one view's snapshots."""
    return offline_dir / spec.name


def snapshot_files(offline_dir: Path, spec: ViewSpec) -> list[Path]:
    """The view's snapshot files, oldest name first (temporary files of unfinished writes excluded)."""
    return parquet_files(view_dir(offline_dir, spec))


def parquet_files(folder: Path) -> list[Path]:
    """The parquet files of a snapshot folder, oldest name first (temporary files of unfinished writes excluded)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"*{SNAPSHOT_SUFFIX}") if not p.name.startswith("."))


def _column_error(spec: ViewSpec, column: str, message: str) -> SnapshotError:
    return SnapshotError(f"feature view {spec.name!r}, column {column!r}: {message}")


def _to_arrow(spec: ViewSpec, frame: pd.DataFrame | pa.Table) -> pa.Table:
    """The frame as an Arrow table, columns checked by name against the spec."""
    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    expected = arrow_schema(spec).names
    missing = [c for c in expected if c not in table.column_names]
    extra = [c for c in table.column_names if c not in expected]
    if missing:
        raise _column_error(spec, missing[0], f"missing (missing columns: {missing}; expected {expected})")
    if extra:
        raise _column_error(spec, extra[0], f"not in the catalogue (unexpected columns: {extra}; expected {expected})")
    return table.select(expected)


def _check_no_nulls(spec: ViewSpec, name: str, column: pa.ChunkedArray) -> None:
    if column.null_count:
        raise _column_error(spec, name, f"{column.null_count} null value(s); this column may not be null")


def _conform_timestamp(spec: ViewSpec, name: str, column: pa.ChunkedArray) -> pa.ChunkedArray:
    if not pa.types.is_timestamp(column.type):
        raise _column_error(spec, name, f"expected timestamp[us, UTC], got {column.type}")
    if column.type.tz is None:
        raise _column_error(spec, name, f"timestamps must be timezone-aware (UTC), got naive {column.type}")
    _check_no_nulls(spec, name, column)
    try:
        return column.cast(TIMESTAMP_TYPE)  # safe cast: refuses to drop sub-microsecond digits
    except pa.ArrowInvalid as error:
        raise _column_error(spec, name, f"cannot store as timestamp[us, UTC] without loss: {error}") from None


def _conform_int64(spec: ViewSpec, name: str, column: pa.ChunkedArray) -> pa.ChunkedArray:
    if not pa.types.is_integer(column.type):
        raise _column_error(spec, name, f"expected int64, got {column.type}")
    _check_no_nulls(spec, name, column)
    try:
        return column.cast(pa.int64())
    except pa.ArrowInvalid as error:
        raise _column_error(spec, name, f"values out of the int64 range: {error}") from None


def _conform_float32(spec: ViewSpec, name: str, column: pa.ChunkedArray) -> pa.ChunkedArray:
    if column.type != pa.float32():
        raise _column_error(spec, name, f"expected float32, got {column.type}")
    return column


def _is_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def _conform_list(spec: ViewSpec, name: str, column: pa.ChunkedArray, dtype: ValueType) -> pa.ChunkedArray:
    """A list column cast to the canonical list type of ``dtype``: no null lists or elements, one length."""
    try:
        column = column.cast(ARROW_TYPES[dtype])  # safe cast: refuses values out of range
    except pa.ArrowInvalid as error:
        raise _column_error(spec, name, f"values out of the {dtype.value} range: {error}") from None
    _check_no_nulls(spec, name, column)
    lengths = pc.unique(pc.list_value_length(column)).to_pylist()
    if len(lengths) > 1:
        raise _column_error(spec, name, f"arrays of different lengths {sorted(lengths)} in one snapshot")
    inner_nulls = pc.list_flatten(column).null_count
    if inner_nulls:
        raise _column_error(spec, name, f"{inner_nulls} null element(s) inside arrays")
    return column


def _conform_float32_list(spec: ViewSpec, name: str, column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if not _is_list(kind) or kind.value_type != pa.float32():
        raise _column_error(spec, name, f"expected a list of float32, got {kind}")
    return _conform_list(spec, name, column, ValueType.float32_list)


def _conform_int64_list(spec: ViewSpec, name: str, column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if not _is_list(kind) or not pa.types.is_integer(kind.value_type):
        raise _column_error(spec, name, f"expected a list of int64, got {kind}")
    return _conform_list(spec, name, column, ValueType.int64_list)


CONFORMERS = {
    ValueType.int64: _conform_int64,
    ValueType.float32: _conform_float32,
    ValueType.float32_list: _conform_float32_list,
    ValueType.int64_list: _conform_int64_list,
}


def conform(spec: ViewSpec, frame: pd.DataFrame | pa.Table) -> pa.Table:
    """Check a snapshot frame against the catalogue and return it in the canonical schema; raise SnapshotError."""
    table = _to_arrow(spec, frame)
    key = spec.entity.join_key
    columns = [_conform_int64(spec, key, table[key])]
    columns += [_conform_timestamp(spec, name, table[name]) for name in (EVENT_TIMESTAMP, CREATED_TIMESTAMP)]
    columns += [CONFORMERS[f.dtype](spec, f.name, table[f.name]) for f in spec.features]
    conformed = pa.table(columns, schema=arrow_schema(spec))
    if conformed.num_rows == 0:
        raise SnapshotError(f"feature view {spec.name!r}: the snapshot has no rows")
    pairs = conformed.group_by([key, EVENT_TIMESTAMP]).aggregate([([], "count_all")])
    if pairs.num_rows != conformed.num_rows:
        repeated = pairs.filter(pc.greater(pairs["count_all"], 1))[key].to_pylist()[:5]
        raise _column_error(spec, key, f"repeated within one event_timestamp (e.g. {repeated}); one row per entity")
    return conformed


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%S") + (moment.strftime(".%f") if moment.microsecond else "") + "Z"


def snapshot_name(table: pa.Table) -> str:
    """The file name of a conformed snapshot: its latest event time and latest created time."""
    event = pc.max(table[EVENT_TIMESTAMP]).as_py().astimezone(UTC)
    created = pc.max(table[CREATED_TIMESTAMP]).as_py().astimezone(UTC)
    return f"event-{_stamp(event)}__created-{_stamp(created)}{SNAPSHOT_SUFFIX}"


def write_snapshot(offline_dir: Path, spec: ViewSpec, frame: pd.DataFrame | pa.Table) -> Path:
    """Validate ``frame`` against the view's spec and add it as a new snapshot file; return the file's path."""
    table = conform(spec, frame)
    folder = view_dir(offline_dir, spec)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / snapshot_name(table)
    exists = FileExistsError(f"feature view {spec.name!r}: snapshot {target} exists; snapshots are never replaced")
    if target.exists():
        raise exists
    temporary = folder / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        pq.write_table(table, temporary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.link(temporary, target)  # atomic, and fails instead of replacing a snapshot written meanwhile
    except FileExistsError:
        raise exists from None
    finally:
        temporary.unlink(missing_ok=True)
    return target


def _utc_scalar(moment: datetime) -> pa.Scalar:
    if moment.tzinfo is None:
        raise ValueError(f"{moment} is a naive datetime; pass a timezone-aware (UTC) time")
    return pa.scalar(moment.astimezone(UTC), type=TIMESTAMP_TYPE)


def _event_window(start: datetime | None, end: datetime | None) -> ds.Expression | None:
    """The row filter ``start <= event_timestamp <= end`` (Feast's materialization window), bounds optional."""
    event = ds.field(EVENT_TIMESTAMP)
    bounds = ([event >= _utc_scalar(start)] if start else []) + ([event <= _utc_scalar(end)] if end else [])
    return functools.reduce(operator.and_, bounds) if bounds else None


def read_snapshots(
    offline_dir: Path, spec: ViewSpec, start: datetime | None = None, end: datetime | None = None
) -> pa.Table:
    """All rows of the view's snapshots with ``start <= event_timestamp <= end`` (bounds optional), in the snapshot
    schema plus ``snapshot``: the file's index in name order (oldest first), for tie-breaking."""
    return read_files(snapshot_files(offline_dir, spec), arrow_schema(spec), start, end)


@dataclass(frozen=True)
class KeyRange:
    """Entities with ``low <= join_key <= high``: one partition of a view, read on its own."""

    join_key: str
    low: int
    high: int

    def expression(self) -> ds.Expression:
        """The row filter of the range."""
        return (ds.field(self.join_key) >= self.low) & (ds.field(self.join_key) <= self.high)


def key_ranges(files: list[Path], join_key: str, parts: int) -> list[KeyRange | None]:
    """Up to ``parts`` contiguous join-key ranges covering every row of ``files``, from the parquet footers' min/max
    statistics (no data read); ``[None]`` (one partition: everything) when a footer lacks them."""
    lows, highs = [], []
    for path in files:
        metadata = pq.ParquetFile(path).metadata
        column = metadata.schema.to_arrow_schema().get_field_index(join_key)
        for group in range(metadata.num_row_groups):
            stats = metadata.row_group(group).column(column).statistics
            if stats is None or not stats.has_min_max:
                return [None]
            lows.append(stats.min)
            highs.append(stats.max)
    if not lows or parts <= 1:
        return [None]
    low, high = int(min(lows)), int(max(highs))
    step = -(-(high - low + 1) // parts)  # ceil: python ints, exact for any int64 key
    return [KeyRange(join_key, first, min(first + step - 1, high)) for first in range(low, high + 1, step)]


def read_files(
    files: list[Path],
    schema: pa.Schema,
    start: datetime | None = None,
    end: datetime | None = None,
    keys: KeyRange | None = None,
) -> pa.Table:
    """The rows of snapshot ``files`` with ``start <= event_timestamp <= end`` (bounds optional) and a join key in
    ``keys`` (default: any), cast to ``schema``, plus ``snapshot``: the file's index in ``files``, for tie-breaking."""
    window = _event_window(start, end)
    if keys is not None:
        window = keys.expression() if window is None else window & keys.expression()
    tables = []
    for index, path in enumerate(files):
        part = pq.read_table(path, filters=window, schema=schema)
        tables.append(part.append_column("snapshot", pa.array(np.full(part.num_rows, index, dtype=np.int32))))
    return pa.concat_tables(tables) if tables else schema.append(pa.field("snapshot", pa.int32())).empty_table()


def latest_rows(table: pa.Table, join_key: str) -> np.ndarray:
    """Indices of one row per entity, Feast's way: the latest event_timestamp, ties broken by the latest ``created``
    (then by the later snapshot file); in ascending join-key order."""
    keys = table[join_key].to_numpy()
    order = np.lexsort(
        (
            table["snapshot"].to_numpy(),
            table[CREATED_TIMESTAMP].cast(pa.int64()).to_numpy(),
            table[EVENT_TIMESTAMP].cast(pa.int64()).to_numpy(),
            keys,
        )
    )
    sorted_keys = keys[order]
    return order[np.append(sorted_keys[1:] != sorted_keys[:-1], True)] if len(order) else order


def latest_per_entity(table: pa.Table, join_key: str) -> pa.Table:
    """The rows of :func:`latest_rows`, sorted by join key."""
    return table.take(pa.array(latest_rows(table, join_key)))


def read_latest(offline_dir: Path, spec: ViewSpec, as_of: datetime | None = None) -> pd.DataFrame:
    """The latest row of every entity across all snapshots (event time <= ``as_of`` if given), sorted by join key,
    in the snapshot columns; arrays come back as numpy float32 or int64 arrays."""
    latest = latest_per_entity(read_snapshots(offline_dir, spec, end=as_of), spec.entity.join_key)
    return latest.drop_columns(["snapshot"]).to_pandas()
