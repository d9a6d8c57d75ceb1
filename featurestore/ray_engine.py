"""graphrec's compute engine with its reading and encoding spread over a Ray cluster (``GRAPHREC_ENGINE=ray``).

featurestore/config.py names it in the ``batch_engine`` block when the settings' engine is ``ray``::

    batch_engine:
      type: featurestore.ray_engine.RayGraphrecComputeEngine
      ray_address: null        # null: a local Ray started on demand
      num_cpus: 2
      object_store_mb: 256

Each view is cut into join-key ranges (from the parquet footers' statistics, no data read); one Ray task per range
reads its rows, keeps the latest per entity and encodes them with Feast's bytes (engine.py, encoding.py), in
parallel across the cluster. The driver writes the encoded batches into the online store with the same writers, and
records every view's interval in one registry commit after all are written, exactly as the local engine: the online
bytes, the intervals and the kill-and-rerun behaviour are the local engine's. Writing stays on the driver because
SQLite takes one writer at a time and because the intervals must be recorded only after every write succeeded.

Why this engine and not Feast's own ``ray.engine`` (``batch_engine: {type: ray.engine}``): both leave the same
SQLite bytes on the same store, and this one was 2.5x faster at 100,000 users (11.7 s against 29.4 s, Ray start-up
excluded; BENCHMARKS.md, bench/ray_features.py). Feast's runs a general plan per view (a DuckDB read, Ray Data
blocks, Feast's row-by-row protobuf conversion before the online write); this one reads only the view's own parquet
key range with pyarrow and encodes whole columns at once (encoding.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from feast.infra.common.materialization_job import MaterializationTask
from pydantic import StrictInt

from feature_repo.catalog import ViewSpec
from featurestore.encoding import OnlineBatch
from featurestore.engine import (
    GraphrecComputeEngine,
    GraphrecComputeEngineConfig,
    OnlineWriter,
    ViewResult,
    encoded_batches,
    latest_in_key_order,
)
from featurestore.offline import KeyRange, key_ranges
from featurestore.ray_runtime import RayTarget, cluster_cpus, ray_connected

RAY_ENGINE_TYPE = "featurestore.ray_engine.RayGraphrecComputeEngine"


class RayGraphrecComputeEngineConfig(GraphrecComputeEngineConfig):
    """The ``batch_engine`` block of the Ray engine: graphrec's engine settings plus where Ray runs."""

    type: Literal["featurestore.ray_engine.RayGraphrecComputeEngine"] = RAY_ENGINE_TYPE  # type: ignore[assignment]
    ray_address: str | None = None
    """Ray cluster to join; None starts a local Ray in the materializing process."""
    num_cpus: StrictInt | None = None
    """CPUs of the local Ray (None: every core)."""
    object_store_mb: StrictInt | None = None
    """Object store of the local Ray, MiB (None: Ray's default)."""
    partitions_per_cpu: StrictInt = 1
    """Key ranges per view for each CPU of the cluster."""


def encode_range(
    files: list[Path],
    spec: ViewSpec,
    start: datetime | None,
    end: datetime | None,
    keys: KeyRange | None,
    key_version: int,
    batch_rows: int,
) -> list[OnlineBatch]:
    """One Ray task: the latest rows of one key range of a view, encoded (runs on a Ray worker)."""
    latest = latest_in_key_order(files, spec, start, end, keys)
    return list(encoded_batches(spec, latest, key_version, batch_rows))


class RayGraphrecComputeEngine(GraphrecComputeEngine):
    """graphrec's engine, each view's key ranges read and encoded by Ray tasks (module docstring)."""

    def __init__(
        self,
        *,
        ray_address: str | None = None,
        num_cpus: int | None = None,
        object_store_mb: int | None = None,
        partitions_per_cpu: int = 1,
        **kwargs: Any,
    ) -> None:
        """Feast passes the ``batch_engine`` block's keys as keyword arguments (and the repo config, stores)."""
        super().__init__(**kwargs)
        self.target = RayTarget(ray_address, num_cpus, object_store_mb)
        self.partitions_per_cpu = partitions_per_cpu

    def _write_views(
        self, writer: OnlineWriter, tasks: Sequence[MaterializationTask], specs: Sequence[ViewSpec]
    ) -> list[ViewResult]:
        """Submit every view's key ranges to Ray at once, then write each view's batches as they are ready."""
        ray = ray_connected(self.target)
        encode = ray.remote(encode_range)
        parts = cluster_cpus(ray) * self.partitions_per_cpu
        version = self.repo_config.entity_key_serialization_version
        submitted = []
        for task, spec in zip(tasks, specs, strict=True):
            result, window = self._window(task)
            files = self._source_files(task.feature_view)
            ranges = key_ranges(files, spec.entity.join_key, parts)
            refs = [encode.remote(files, spec, *window, keys, version, self.batch_rows) for keys in ranges]
            submitted.append((task, result, refs))
        results = []
        for task, result, refs in submitted:
            started = time.perf_counter()
            batches = [batch for part in ray.get(refs) for batch in part]
            result.rows = sum(len(batch) for batch in batches)
            self._write_batches(writer, task, batches, result.rows)
            results.append(self._finish(result, started))
        return results
