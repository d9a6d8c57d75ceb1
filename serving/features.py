"""Online feature reads for serving, through Feast.

* The user row: one ``OnlineStore.online_read`` per view per request (one entity key), decoded straight into numpy
  arrays. ``online_read`` is the narrow contract every Feast online store implements and ``get_online_features``
  wraps; calling it directly skips that wrapper's per-call request planning and response assembly, which cost about
  ten times the read itself for one entity (BENCHMARKS.md, issue 17). Values past a view's ttl count as missing, as
  ``get_online_features`` reports them (graphrec's views have an unbounded ttl).
* Item rows: an in-process :class:`ItemTable` (one numpy array per feature, rows sorted by item id) loaded through
  ``get_online_features`` for every item of the view's offline source, tagged with the view's materialization watermark
  (the latest interval end in the Feast registry); the binding poller reloads it when the watermark moves.
* The naive path (benchmark baseline): ``get_online_features`` for the user and every candidate, as a pandas frame.

Every failure of the feature store surfaces as :class:`StoreUnavailable`, which the app turns into a 503. With a
SQLite online store every read first checks the file (serving/files.py): a deleted file is a StoreUnavailable, never
recreated empty by a read, and a replaced one is read through a new FeatureStore, so a file put back is served without
a restart. :meth:`FeatureReader.check_online` is the readiness probe's one cheap online read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
from feast import FeatureStore, FeatureView, FileSource
from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from featurestore.internals import fail_fast_redis, online_store_of, sqlite_db_path
from serving.files import file_identity
from serving.pyfunc_model import ITEM_ID, ITEM_PREFIX, USER_ID, USER_PREFIX

log = logging.getLogger(__name__)

LOAD_CHUNK = 1000  # entity rows per get_online_features call when loading the item table


class StoreUnavailable(RuntimeError):
    """The online store or the Feast registry could not be read."""


LIST_DTYPES = {"float_list_val": np.float32, "double_list_val": np.float32, "int64_list_val": np.int64}


def decode_value(value: object) -> object:
    """A Feast ValueProto as a Python scalar, a float32 array or an int64 array (id lists, exact) (None when
    unset)."""
    kind = value.WhichOneof("val")  # type: ignore[attr-defined]
    if kind is None or kind == "null_val":
        return None
    field = getattr(value, kind)
    if kind.endswith("_list_val"):
        return np.asarray(field.val, dtype=LIST_DTYPES.get(kind))
    return field


def stack_column(values: Sequence[object]) -> np.ndarray:
    """Decoded values of one feature as an array: scalars (B,), arrays stacked (B, n)."""
    array = np.stack(values) if values and isinstance(values[0], np.ndarray) else np.asarray(values)
    return array.astype(np.float32) if array.dtype == np.float64 else array


@dataclass(frozen=True)
class ItemTable:
    """Feature rows of a set of items, by sorted item id: ``columns[f][i]`` belongs to ``ids[i]``."""

    ids: np.ndarray  # (N,) int64, sorted
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)

    def locate(self, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row index of each item and whether the item has a row (index is meaningless where not found)."""
        index = np.searchsorted(self.ids, item_ids)
        index = np.minimum(index, max(len(self.ids) - 1, 0))
        found = (self.ids[index] == item_ids) if len(self.ids) else np.zeros(len(item_ids), dtype=bool)
        return index, found

    def gather(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """The rows at ``index`` of every column."""
        return {name: column[index] for name, column in self.columns.items()}


class FeatureReader:
    """Reads served features from one Feast FeatureStore."""

    def __init__(self, store: FeatureStore):
        self.config = store.config
        online = store.config.online_store
        self.online_path = sqlite_db_path(store.config) if isinstance(online, SqliteOnlineStoreConfig) else None
        self._store: FeatureStore | None = store
        self._identity = file_identity(self.online_path) if self.online_path is not None else None
        self._lock = threading.Lock()
        self._read_views: dict[str, FeatureView] = {}  # views read per request, until the next refresh
        fail_fast_redis(store)

    @property
    def store(self) -> FeatureStore:
        """The FeatureStore to read through. With a SQLite online store its file is checked first: a missing file is
        a StoreUnavailable (the store holding the deleted file is dropped, and nothing opens the path, which would
        create it empty), a replaced file gets a new FeatureStore that opens it anew."""
        identity = file_identity(self.online_path) if self.online_path is not None else None
        store = self._store
        if store is not None and (self.online_path is None or identity is not None and identity == self._identity):
            return store
        with self._lock:
            if identity is None:
                self._store, self._identity = None, None
                raise StoreUnavailable(f"online store file {self.online_path} does not exist")
            if self._store is None or identity != self._identity:
                log.info("online store file %s was replaced or restored: reopening it", self.online_path)
                self._store, self._identity = FeatureStore(config=self.config), identity
                self._read_views = {}
            return self._store

    def refresh(self) -> None:
        """Re-read the Feast registry (new views, new materialization intervals)."""
        store = self.store
        try:
            store.refresh_registry()
        except Exception as error:  # any registry backend failure, re-raised as StoreUnavailable
            raise StoreUnavailable(f"Feast registry unreadable: {error}") from error
        self._read_views = {}

    def view(self, name: str) -> FeatureView | None:
        """A feature view from the cached registry, or None when it is not applied."""
        store = self.store
        try:
            return store.get_feature_view(name, allow_registry_cache=True)
        except Exception:  # noqa: BLE001  Feast raises several not-found types
            return None

    def watermark(self, name: str) -> datetime | None:
        """End of the view's latest materialization interval (None: missing or never materialized)."""
        view = self.view(name)
        if view is None or not view.materialization_intervals:
            return None
        return max(end for _, end in view.materialization_intervals)

    def _online(
        self, refs: list[str], rows: list[dict[str, int]], full_names: bool = False
    ):  # a GetOnlineFeaturesResponse protobuf
        store = self.store
        try:
            return store.get_online_features(features=refs, entity_rows=rows, full_feature_names=full_names).proto
        except Exception as error:  # any online store failure, re-raised as StoreUnavailable
            raise StoreUnavailable(f"online store read failed: {type(error).__name__}") from error

    def check_online(self, user_view: str, feature: str) -> None:
        """One online read of one user's ``feature`` (whether or not the user has a row): raises StoreUnavailable
        when the online store is missing, corrupt or unreachable. The readiness probe: cheap, never per item."""
        self._online([f"{user_view}:{feature}"], [{USER_ID: 0}])

    def user_row(self, view: str, features: Sequence[str], user_id: int) -> dict[str, np.ndarray] | None:
        """The user's features, each a (1, ...) array; None when the user has no (or incomplete) features."""
        return self.user_rows({view: features}, user_id)[view]

    def user_rows(self, views: dict[str, Sequence[str]], user_id: int) -> dict[str, dict[str, np.ndarray] | None]:
        """Several views' rows of one user, one ``online_read`` each: per view, its features as (1, ...) arrays, or
        None when the user has no (or incomplete, or expired) features in that view."""
        store = self.store
        key = EntityKey(join_keys=[USER_ID], entity_values=[Value(int64_val=user_id)])
        rows: dict[str, dict[str, np.ndarray] | None] = {}
        for name, features in views.items():
            view = self._read_view(name)
            try:
                [(written, values)] = online_store_of(store).online_read(self.config, view, [key], list(features))
            except Exception as error:  # any online store failure, re-raised as StoreUnavailable
                raise StoreUnavailable(f"online store read failed: {type(error).__name__}") from error
            rows[name] = _entity_row(values, features, written, view)
        return rows

    def _read_view(self, name: str) -> FeatureView:
        """The applied view ``name`` for per-request reads, cached until the next :meth:`refresh`."""
        view = self._read_views.get(name)
        if view is None:
            view = self.view(name)
            if view is None:
                raise StoreUnavailable(f"feature view {name!r} is not applied")
            self._read_views[name] = view
        return view

    def entity_ids(self, view: FeatureView, join_key: str) -> np.ndarray:
        """Distinct join-key values of the view's offline source (the entities it materializes)."""
        source = view.batch_source
        if not isinstance(source, FileSource):
            raise StoreUnavailable(
                f"view {view.name!r}: entity enumeration needs a FileSource, not {type(source).__name__}"
            )
        table = pads.dataset(source.path, format="parquet").to_table(columns=[join_key])
        return np.unique(table.column(join_key).to_numpy()).astype(np.int64)

    def item_table(self, view_name: str, features: Sequence[str]) -> ItemTable:
        """Every item of the view with complete features in the online store, as an :class:`ItemTable`."""
        view = self.view(view_name)
        if view is None:
            raise StoreUnavailable(f"feature view {view_name!r} is not applied")
        ids = self.entity_ids(view, ITEM_ID)
        refs = [f"{view_name}:{f}" for f in features]
        decoded: dict[str, list[object]] = {f: [] for f in features}
        for start in range(0, len(ids), LOAD_CHUNK):
            chunk = ids[start : start + LOAD_CHUNK]
            response = self._online(refs, [{ITEM_ID: int(i)} for i in chunk])
            for name, result in zip(response.metadata.feature_names.val, response.results, strict=True):
                if name in decoded:
                    decoded[name].extend(
                        decode_value(v) if s == FieldStatus.PRESENT else None
                        for v, s in zip(result.values, result.statuses, strict=True)
                    )
        complete = np.array([all(decoded[f][i] is not None for f in features) for i in range(len(ids))], dtype=bool)
        keep = np.flatnonzero(complete)
        columns = {f: stack_column([decoded[f][i] for i in keep]) for f in features}
        return ItemTable(ids=ids[keep], columns=columns)

    def naive_frame(
        self,
        user_view: str,
        user_features: Sequence[str],
        item_view: str,
        item_features: Sequence[str],
        user_id: int,
        item_ids: Sequence[int],
    ) -> pd.DataFrame:
        """The pyfunc's input frame read the plain way: one Feast read of every (user, item) pair, via pandas."""
        refs = [f"{user_view}:{f}" for f in user_features] + [f"{item_view}:{f}" for f in item_features]
        rows = [{USER_ID: user_id, ITEM_ID: int(i)} for i in item_ids]
        store = self.store
        try:
            frame = store.get_online_features(features=refs, entity_rows=rows, full_feature_names=True).to_df()
        except Exception as error:  # any online store failure, re-raised as StoreUnavailable
            raise StoreUnavailable(f"online store read failed: {type(error).__name__}") from error
        renames = {f"{user_view}__{f}": USER_PREFIX + f for f in user_features}
        renames |= {f"{item_view}__{f}": ITEM_PREFIX + f for f in item_features}
        frame = frame.rename(columns=renames)
        for column in frame.columns:  # Feast returns float32 values widened: doubles and lists of Python floats
            if frame[column].dtype == np.float64:
                frame[column] = frame[column].astype(np.float32)
            elif frame[column].dtype == object:
                frame[column] = [None if v is None else _narrowed(np.asarray(v)) for v in frame[column]]
        return frame


def _entity_row(
    values: dict[str, object] | None, features: Sequence[str], written: datetime | None, view: FeatureView
) -> dict[str, np.ndarray] | None:
    """One entity's ``online_read`` result as (1, ...) arrays; None when a feature is missing or the row is older
    than the view's ttl (0: never expires)."""
    if values is None or written is None:
        return None
    written = written if written.tzinfo is not None else written.replace(tzinfo=UTC)  # stores return naive UTC
    if view.ttl and written < datetime.now(UTC) - view.ttl:
        return None
    row = {}
    for feature in features:
        value = decode_value(values[feature]) if feature in values else None
        if value is None:
            return None
        row[feature] = np.asarray(value)[None, ...]
    return row


def _narrowed(array: np.ndarray) -> np.ndarray:
    """A list value as served: int64 id lists stay int64 (exact), float lists become float32."""
    return array.astype(np.int64) if np.issubdtype(array.dtype, np.integer) else array.astype(np.float32)
