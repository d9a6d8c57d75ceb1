"""Benchmark: graphrec's compute engine (featurestore/engine.py) against Feast 0.67's own local engine, both run by
the same ``FeatureStore.materialize`` call (only ``batch_engine`` differs), into SQLite and into Redis, on synthetic
users.

Per user, written with ``write_snapshot``: ``user_transh`` (a 64-d float32 embedding) and ``user_graph_stats`` (two
16-d float32 vectors and five scalars); every user has one row per view, so rows = users x 2. Each repeat gives both
engines a fresh work dir over the same offline snapshots and a fresh online store (Redis: a throwaway redis-server
per engine on a free loopback port); then ``get_online_features`` of both is compared on a random sample of users,
every feature, arrays included. Seconds are the ``materialize`` call alone; the table shows the median over repeats
with its min-max, and the speedup of the medians with the min-max of the per-repeat ratios.

    .venv/bin/python -m bench.materialize --sizes 10000 100000 [--repeats 3] [--skip-feast-above N] [--stores ...]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureStore

from feature_repo.catalog import (
    CREATED_TIMESTAMP,
    EVENT_TIMESTAMP,
    USER,
    USER_GRAPH_STATS,
    USER_TRANSH,
    ValueType,
    ViewSpec,
)
from featurestore.config import LOCAL_ENGINE, feature_store
from featurestore.engine import GraphrecComputeEngine
from featurestore.internals import batch_engine_of
from featurestore.materialize import EPOCH
from featurestore.offline import write_snapshot
from featurestore.store import apply
from graphrec.settings import OnlineStoreKind, Settings
from graphrec.testing import running_redis

BENCH_VIEWS = (USER_TRANSH, USER_GRAPH_STATS)
DIMS = {USER_TRANSH.name: 64, USER_GRAPH_STATS.name: 16}
AS_OF = datetime(2011, 5, 1, tzinfo=UTC)
CREATED = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2030, 1, 1, tzinfo=UTC)


def synthetic_frame(spec: ViewSpec, n_users: int, rng: np.random.Generator) -> pd.DataFrame:
    """One snapshot of a user view: random embeddings/vectors and scalars for users 0..n-1."""
    columns: dict[str, object] = {
        spec.entity.join_key: np.arange(n_users, dtype=np.int64),
        EVENT_TIMESTAMP: pd.Timestamp(AS_OF),
        CREATED_TIMESTAMP: pd.Timestamp(CREATED),
    }
    for feature in spec.features:
        if feature.dtype is ValueType.float32_list:
            columns[feature.name] = list(rng.standard_normal((n_users, DIMS[spec.name]), dtype=np.float32))
        elif feature.dtype is ValueType.float32:
            columns[feature.name] = rng.random(n_users, dtype=np.float32)
        else:
            columns[feature.name] = rng.integers(0, 10_000, n_users)
    return pd.DataFrame(columns)


@contextlib.contextmanager
def online_target(kind: OnlineStoreKind) -> Iterator[dict[str, Any]]:
    """Settings overrides for a fresh online store of ``kind``."""
    if kind is OnlineStoreKind.sqlite:
        yield {"online_store": kind}
    else:
        with running_redis() as url:
            yield {"online_store": kind, "redis_url": url}


def timed_materialize(store: FeatureStore) -> float:
    """Seconds of Feast's ``materialize`` of the bench views with the store's engine (console output swallowed)."""
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        store.materialize(EPOCH, END, feature_views=[spec.name for spec in BENCH_VIEWS])
    return time.perf_counter() - started


def online_values(settings: Settings, users: list[int]) -> dict[str, list]:
    """Stock Feast online read of every bench feature for ``users``."""
    refs = [f"{spec.name}:{name}" for spec in BENCH_VIEWS for name in spec.feature_names]
    rows = [{USER.join_key: user} for user in users]
    return feature_store(settings).get_online_features(refs, rows, full_feature_names=True).to_dict()


def prepared_work_dir(offline: Path, work_dir: Path, overrides: dict[str, Any]) -> Settings:
    """A work dir whose offline snapshots are hard links to the shared ones, with the definitions applied."""
    settings = Settings(work_dir=work_dir, **overrides)
    shutil.copytree(offline, settings.offline_dir, copy_function=os.link)
    apply(settings)
    return settings


@dataclass
class Timings:
    """Seconds per repeat of each engine on one (store, size), and whether their online values agreed."""

    ours: list[float] = field(default_factory=list)
    feast: list[float] = field(default_factory=list)
    identical: bool = True


def one_repeat(
    root: Path, offline: Path, kind: OnlineStoreKind, users: list[int], run_feast: bool, timings: Timings
) -> None:
    """Materialize the same snapshots with each engine into its own fresh store; record seconds and agreement."""
    with online_target(kind) as ours_target, online_target(kind) as feast_target:
        ours = prepared_work_dir(offline, root / "ours", ours_target)
        store = feature_store(ours)
        assert isinstance(batch_engine_of(store), GraphrecComputeEngine), "feature_store.yaml must name our engine"
        timings.ours.append(timed_materialize(store))
        if run_feast:
            feast = prepared_work_dir(offline, root / "feast", feast_target)
            timings.feast.append(timed_materialize(feature_store(feast, batch_engine=LOCAL_ENGINE)))
            timings.identical &= online_values(ours, users) == online_values(feast, users)
    shutil.rmtree(root)


def spread(values: list[float]) -> str:
    """``median (min-max)`` of a list of values."""
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def bench_size(
    root: Path, n_users: int, kinds: list[OnlineStoreKind], run_feast: bool, sample: int, repeats: int
) -> None:
    """Benchmark one size on every store kind and print a line per kind; ``root`` is removed afterwards."""
    rng = np.random.default_rng(n_users)
    data = Settings(work_dir=root / "data")
    for spec in BENCH_VIEWS:
        write_snapshot(data.offline_dir, spec, synthetic_frame(spec, n_users, rng))
    users = sorted(rng.choice(n_users, size=min(sample, n_users), replace=False).tolist())
    rows = n_users * len(BENCH_VIEWS)
    for kind in kinds:
        timings = Timings()
        for repeat in range(repeats):
            one_repeat(root / f"{kind.value}-{repeat}", data.offline_dir, kind, users, run_feast, timings)
        ours_median = statistics.median(timings.ours)
        if run_feast:
            ratios = [feast / ours for feast, ours in zip(timings.feast, timings.ours, strict=True)]
            feast_cells = f"{spread(timings.feast):>22} {rows / statistics.median(timings.feast):>11,.0f}"
            speedup = f"{statistics.median(timings.feast) / ours_median:.1f}x ({min(ratios):.1f}-{max(ratios):.1f})"
            check = "identical" if timings.identical else "DIFFERENT"
        else:
            feast_cells, speedup, check = f"{'skipped':>22} {'-':>11}", "-", "-"
        print(
            f"{kind.value:<7} {n_users:>9,} {rows:>10,} {repeats:>3} {feast_cells} {spread(timings.ours):>22} "
            f"{rows / ours_median:>11,.0f} {speedup:>17} {check} ({len(users)} users)",
            flush=True,
        )
    shutil.rmtree(root)


def main() -> None:
    """Parse arguments, run every size and store, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="numbers of users")
    choices = [k.value for k in OnlineStoreKind]
    parser.add_argument("--stores", nargs="+", default=choices, choices=choices, help="online stores to benchmark")
    parser.add_argument("--repeats", type=int, default=3, help="fresh runs of each engine per size and store")
    parser.add_argument("--skip-feast-above", type=int, default=None, help="run only ours above this many users")
    parser.add_argument("--sample", type=int, default=2_000, help="users compared between the two online stores")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # Feast's MLflow hook creates each work dir's tracking DB
    kinds = [OnlineStoreKind(k) for k in args.stores]
    print(
        f"{'store':<7} {'users':>9} {'rows':>10} {'n':>3} {'feast s median (min-max)':>22} {'feast rows/s':>11} "
        f"{'ours s median (min-max)':>22} {'ours rows/s':>11} {'speedup':>17} online values"
    )
    with tempfile.TemporaryDirectory(prefix="graphrec-bench-") as folder:
        for n_users in args.sizes:
            run_feast = args.skip_feast_above is None or n_users <= args.skip_feast_above
            bench_size(Path(folder) / str(n_users), n_users, kinds, run_feast, args.sample, args.repeats)


if __name__ == "__main__":
    main()
