"""Bulk upserts into Feast's SQLite online store, row for row what ``SqliteOnlineStore.online_write_batch`` writes.

One row per (entity, feature) in the table ``<project>_<view>``: ``entity_key`` (serialized key), ``feature_name``,
``value`` (serialized ValueProto), ``value_text`` (str of a scalar, else NULL), ``event_ts`` and ``created_ts``
(whatever Feast's registered sqlite3 datetime adapter makes of the naive-UTC datetime: epoch seconds), inserted with the
same ``INSERT ... ON CONFLICT(entity_key, feature_name) DO UPDATE`` (500 rows per statement), one transaction per
batch, in primary-key order; a batch interrupted before its commit leaves nothing, and a re-run simply upserts again.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from itertools import chain, repeat
from typing import Any

import numpy as np
from feast import FeatureView, RepoConfig
from feast.infra.online_stores.helpers import compute_table_id
from feast.infra.online_stores.sqlite import SqliteOnlineStore
from feast.utils import to_naive_utc

from featurestore.encoding import OnlineBatch, value_texts
from featurestore.internals import quote_sqlite_identifier, sqlite_db_path

EPOCH = datetime(1970, 1, 1)
PAGE_CACHE_KIB = 256 * 1024  # this connection only: keeps the table's B-tree pages in memory during bulk writes
COLUMNS = ("entity_key", "feature_name", "value", "value_text", "event_ts", "created_ts")
ROWS_PER_STATEMENT = 500


def _upsert(table: str, rows: int) -> str:
    """Feast's upsert statement, for ``rows`` rows at once (fewer statement executions, same effect)."""
    values = ", ".join(["(" + ", ".join("?" * len(COLUMNS)) + ")"] * rows)
    updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[2:])
    return (
        f"INSERT INTO {quote_sqlite_identifier(table)} ({', '.join(COLUMNS)}) VALUES {values} "
        f"ON CONFLICT(entity_key, feature_name) DO UPDATE SET {updates};"
    )


def sqlite_timestamps(micros: np.ndarray) -> list[Any]:
    """The ``event_ts``/``created_ts`` values Feast stores for these UTC instants (one adapter call per instant)."""
    adapt = sqlite3.adapters.get((datetime, sqlite3.PrepareProtocol), lambda moment: moment)
    distinct, inverse = np.unique(micros, return_inverse=True)
    stored = [adapt(to_naive_utc(EPOCH + timedelta(microseconds=int(m)))) for m in distinct.tolist()]
    return np.array(stored, dtype=object)[inverse].tolist()


class SqliteWriter:
    """Writes OnlineBatches into the SQLite online store of a Feast config."""

    def __init__(self, config: RepoConfig):
        store_config = config.online_store
        if store_config.vector_enabled or store_config.enable_openai_compatible_store:
            raise ValueError(
                "graphrec's compute engine does not write the SQLite store's vector or OpenAI-compatible options "
                "(configure batch_engine: local in feature_store.yaml to use Feast's own engine)"
            )
        self.config = config
        self.connection = sqlite3.connect(sqlite_db_path(config))
        self.connection.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")

    def prepare(self, view: FeatureView) -> None:
        """Create the view's table if missing, exactly as ``feast apply`` does."""
        SqliteOnlineStore().update(self.config, [], [view], [], [], partial=True)

    def write(self, view: FeatureView, batch: OnlineBatch) -> None:
        """Upsert every feature of every row of ``batch`` in one transaction, in primary-key order."""
        table = compute_table_id(self.config.project, view, self.config.registry.enable_online_feature_view_versioning)
        event_ts = sqlite_timestamps(batch.event_micros)
        created_ts = sqlite_timestamps(batch.created_micros)
        per_feature = [
            zip(
                batch.keys,
                repeat(f.name),
                batch.values[f.name],
                value_texts(f.dtype, batch.table[f.name]),
                event_ts,
                created_ts,
            )
            for f in sorted(batch.spec.features, key=lambda f: f.name)
        ]
        rows = zip(*per_feature, strict=True)  # entity-major, then feature name
        params = list(chain.from_iterable(chain.from_iterable(rows)))
        width = len(COLUMNS) * ROWS_PER_STATEMENT
        full = len(params) - len(params) % width
        with self.connection:
            statements = (params[i : i + width] for i in range(0, full, width))
            self.connection.executemany(_upsert(table, ROWS_PER_STATEMENT), statements)
            if full < len(params):
                self.connection.execute(_upsert(table, (len(params) - full) // len(COLUMNS)), params[full:])

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()
