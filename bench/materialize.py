"""Benchmark: Feast 0.67's own ``FeatureStore.materialize`` (local engine, DuckDB offline store) against graphrec's fast
materialization (featurestore/materialize.py), into SQLite and into Redis, on synthetic users.

Per user, written with ``write_snapshot``: ``user_transh`` (a 64-d float32 embedding) and ``user_graph_stats`` (two
16-d float32 vectors and five scalars); every user has one row per view, so rows = users x 2. Both engines read the
same offline snapshots into separate online stores (Redis: a throwaway redis-server per engine on a free loopback
port), then ``get_online_features`` of both is compared on a random sample of users, every feature, arrays included.

    .venv/bin/python bench/materialize.py --sizes 10000 100000 1000000 [--skip-feast-above N] [--stores sqlite redis]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from feature_repo.catalog import (
    CREATED_TIMESTAMP,
    EVENT_TIMESTAMP,
    USER,
    USER_GRAPH_STATS,
    USER_TRANSH,
    ValueType,
    ViewSpec,
)
from graphrec.settings import OnlineStoreKind, Settings
from featurestore.materialize import EPOCH, materialize
from featurestore.offline import write_snapshot
from graphrec.testing import running_redis
from featurestore.store import apply, feature_store

BENCH_VIEWS = (USER_TRANSH, USER_GRAPH_STATS)
DIMS = {USER_TRANSH.name: 64, USER_GRAPH_STATS.name: 16}
AS_OF = datetime(2011, 5, 1, tzinfo=timezone.utc)
CREATED = datetime(2026, 1, 1, tzinfo=timezone.utc)
END = datetime(2030, 1, 1, tzinfo=timezone.utc)


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


def feast_materialize(settings: Settings) -> float:
    """Seconds of Feast's own materialization of the bench views (its console output swallowed)."""
    store = feature_store(settings)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        store.materialize(EPOCH, END, feature_views=[spec.name for spec in BENCH_VIEWS])
    return time.perf_counter() - started


def fast_materialize(settings: Settings) -> float:
    """Seconds of graphrec's materialization of the bench views."""
    started = time.perf_counter()
    materialize(settings, end=END, views=[spec.name for spec in BENCH_VIEWS])
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


def bench_size(root: Path, n_users: int, kinds: list[OnlineStoreKind], run_feast: bool, sample: int) -> None:
    """Benchmark one size on every store kind and print a line per kind; ``root`` is removed afterwards."""
    rng = np.random.default_rng(n_users)
    data = Settings(work_dir=root / f"data-{n_users}")
    for spec in BENCH_VIEWS:
        write_snapshot(data, spec, synthetic_frame(spec, n_users, rng))
    users = sorted(rng.choice(n_users, size=min(sample, n_users), replace=False).tolist())
    rows = n_users * len(BENCH_VIEWS)
    for kind in kinds:
        with online_target(kind) as ours_target, online_target(kind) as feast_target:
            ours = prepared_work_dir(data.offline_dir, root / f"ours-{kind.value}-{n_users}", ours_target)
            ours_s = fast_materialize(ours)
            if run_feast:
                feast = prepared_work_dir(data.offline_dir, root / f"feast-{kind.value}-{n_users}", feast_target)
                feast_s = feast_materialize(feast)
                same = online_values(ours, users) == online_values(feast, users)
                feast_cells = f"{feast_s:>9.1f} {rows / feast_s:>11,.0f}"
                ratio, check = f"{feast_s / ours_s:>7.1f}x", ("identical" if same else "DIFFERENT")
            else:
                feast_cells, ratio, check = f"{'skipped':>9} {'-':>11}", f"{'-':>8}", "-"
        print(
            f"{kind.value:<7} {n_users:>9,} {rows:>10,} {feast_cells} {ours_s:>8.2f} {rows / ours_s:>11,.0f} "
            f"{ratio} {check} ({len(users)} users)",
            flush=True,
        )
    shutil.rmtree(root)


def main() -> None:
    """Parse arguments, run every size and store, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="numbers of users")
    choices = [k.value for k in OnlineStoreKind]
    parser.add_argument("--stores", nargs="+", default=choices, choices=choices, help="online stores to benchmark")
    parser.add_argument("--skip-feast-above", type=int, default=None, help="run only ours above this many users")
    parser.add_argument("--sample", type=int, default=2_000, help="users compared between the two online stores")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # Feast's MLflow hook creates each work dir's tracking DB
    kinds = [OnlineStoreKind(k) for k in args.stores]
    print(f"{'store':<7} {'users':>9} {'rows':>10} {'feast s':>9} {'feast rows/s':>11} {'ours s':>8} "
          f"{'ours rows/s':>11} {'speedup':>8} online values")
    with tempfile.TemporaryDirectory(prefix="graphrec-bench-") as folder:
        for n_users in args.sizes:
            run_feast = args.skip_feast_above is None or n_users <= args.skip_feast_above
            bench_size(Path(folder) / str(n_users), n_users, kinds, run_feast, args.sample)


if __name__ == "__main__":
    main()
