"""graphrec's compute engine (featurestore/engine.py) against Feast's own local engine, on SQLite and on Redis:
Feast resolves ours from feature_store.yaml; through Feast's API and through the stock ``feast`` CLI it leaves the
same online values, stored bytes and registry intervals as the local engine; incremental runs; a run killed midway
then re-run ends exactly like a clean run; what it cannot write is refused by name."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import redis
import yaml
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig
from feast.infra.compute_engines.local.compute import LocalComputeEngine
from feast.type_map import python_values_to_proto_values
from feast.types import Int64, String
from feast.value_type import ValueType

from feature_repo.catalog import (
    CREATED_TIMESTAMP,
    ENTITIES,
    EVENT_TIMESTAMP,
    ITEM,
    ITEM_TRANSH,
    USER,
    USER_GRAPH_STATS,
    USER_TRANSH,
    VIEWS,
)
from feature_repo.catalog import ValueType as CatalogueType
from feature_repo.model_views import ModelViews, save_manifest
from featurestore.config import LOCAL_ENGINE, STOCK_CONFIG, config_dict, feature_store
from featurestore.encoding import feature_values
from featurestore.engine import (
    ENGINE_TYPE,
    GraphrecComputeEngine,
    GraphrecComputeEngineConfig,
    UnsupportedByEngine,
    view_spec_of,
)
from featurestore.internals import batch_engine_of
from featurestore.materialize import EPOCH, materialize
from featurestore.offline import write_snapshot
from featurestore.store import apply, online_features
from graphrec.settings import OnlineStoreKind, Settings
from serving.features import FeatureReader
from tests.support.snapshots import CREATED_1, CREATED_2, T1, T2, random_frame, write_two_snapshots

MakeSettings = Callable[..., Settings]  # the store_settings fixture
N = 300
END = datetime(2030, 1, 1, tzinfo=UTC)
BETWEEN = T1 + timedelta(days=3)  # after the first snapshot, before the second
FEAST_CLI = str(Path(sys.executable).parent / "feast")

KILLED_RUN = f"""
import os, signal
from datetime import datetime
from featurestore.config import feature_store
from featurestore.materialize import materialize
from graphrec.settings import get_settings
# several batches per view; the process kills itself right after the first one
store = feature_store(get_settings(), batch_engine={{"type": "{ENGINE_TYPE}", "batch_rows": 50}})
end = datetime.fromisoformat("{END.isoformat()}")
materialize(store, end=end, progress=lambda *_: os.kill(os.getpid(), signal.SIGKILL))
"""


def pair(make: MakeSettings, overrides: dict[str, object]) -> tuple[Settings, Settings]:
    """Two work dirs, ours and Feast's, with separate online stores (Redis: databases 0 and 1 of one server)."""
    ours = make(**overrides)
    theirs_overrides = dict(overrides)
    if overrides["online_store"] is OnlineStoreKind.redis:
        theirs_overrides["redis_url"] = f"{overrides['redis_url']},db=1"
    theirs = Settings(**(ours.model_dump() | theirs_overrides | {"work_dir": ours.work_dir.parent / "feast"}))
    return ours, theirs


def local_engine(settings: Settings) -> FeatureStore:
    """The feature store of ``settings`` materializing with Feast's own local engine: the baseline."""
    store = feature_store(settings, batch_engine=LOCAL_ENGINE)
    assert type(batch_engine_of(store)) is LocalComputeEngine
    return store


def write_to_both(
    ours: Settings, theirs: Settings, ids: np.ndarray, event: datetime, created: datetime, rng: np.random.Generator
) -> None:
    """One snapshot of every view, the same random rows for ``ids``, into both work dirs."""
    for spec in VIEWS:
        frame = random_frame(spec, ids, event, created, rng)
        write_snapshot(ours.offline_dir, spec, frame)
        write_snapshot(theirs.offline_dir, spec, frame)


def copy_offline(source: Settings, target: Settings) -> None:
    """Give ``target`` the same snapshot files as ``source``."""
    shutil.copytree(source.offline_dir, target.offline_dir, dirs_exist_ok=True)


def online_dump(settings: Settings) -> dict:
    """Everything in the online store, as stored: SQLite rows per table, or Redis hashes per key."""
    if settings.online_store is OnlineStoreKind.sqlite:
        with closing(sqlite3.connect(settings.online_sqlite_path)) as connection:
            tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            query = 'SELECT * FROM "{}" ORDER BY entity_key, feature_name'
            return {table: connection.execute(query.format(table)).fetchall() for table in tables}
    address, *options = settings.redis_url.split(",")
    host, port = address.split(":")
    database = int(dict(option.split("=") for option in options).get("db", 0))
    client = redis.Redis(host=host, port=int(port), db=database)
    return {key: client.hgetall(key) for key in client.scan_iter(count=1_000)}


def online_values(settings: Settings, n: int) -> dict[str, dict]:
    """Stock Feast online read of every feature of entities 0..n-1, per entity kind."""
    store = feature_store(settings)
    values = {}
    for entity in ENTITIES:
        refs = [f"{spec.name}:{name}" for spec in VIEWS if spec.entity == entity for name in spec.feature_names]
        rows = [{entity.join_key: i} for i in range(n)]
        response = store.get_online_features(features=refs, entity_rows=rows, full_feature_names=True)
        values[entity.name] = response.to_dict()
    return values


def intervals(settings: Settings) -> dict[str, list]:
    """Materialization intervals of every registered view."""
    return {fv.name: fv.materialization_intervals for fv in feature_store(settings).list_feature_views()}


def assert_same_online_state(ours: Settings, theirs: Settings, n: int) -> None:
    assert online_values(ours, n) == online_values(theirs, n)
    assert online_dump(ours) == online_dump(theirs)


def stock_feast(settings: Settings, *arguments: str) -> subprocess.CompletedProcess:
    """Run the stock ``feast`` CLI on feature_repo/ with the config apply() wrote to the work dir, as README says."""
    env = os.environ | {"FEAST_FS_YAML_FILE_PATH": str(settings.work_dir / STOCK_CONFIG)}
    command = [FEAST_CLI, "--log-level", "INFO", "-c", str(settings.feature_repo), *arguments]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def test_feast_resolves_graphrec_engine_from_the_config(store_settings: MakeSettings) -> None:
    settings = store_settings()
    apply(settings)
    store = feature_store(settings)
    assert type(batch_engine_of(store)) is GraphrecComputeEngine
    assert isinstance(store.config.batch_engine, GraphrecComputeEngineConfig)  # Feast found its config class
    written = yaml.safe_load((settings.work_dir / STOCK_CONFIG).read_text())  # what the stock CLI reads
    assert written["batch_engine"] == {"type": ENGINE_TYPE}
    stock = yaml.safe_load((settings.feature_repo / STOCK_CONFIG).read_text())
    assert stock["batch_engine"] == {"type": ENGINE_TYPE}


def test_same_values_bytes_and_intervals_as_feast(store_settings: MakeSettings, online_store: dict) -> None:
    ours, theirs = pair(store_settings, online_store)
    write_two_snapshots(ours, N)
    copy_offline(ours, theirs)
    apply(ours)
    apply(theirs)
    local_engine(theirs).materialize(EPOCH, END)
    calls = []
    report = materialize(feature_store(ours), end=END, progress=lambda *call: calls.append(call))

    assert_same_online_state(ours, theirs, N)
    assert intervals(ours) == intervals(theirs) == {spec.name: [(EPOCH, END)] for spec in VIEWS}
    assert report.rows == N * len(VIEWS) and {v.rows for v in report.views} == {N}
    assert {(view, done, total) for view, done, total in calls} == {(spec.name, N, N) for spec in VIEWS}
    both = online_features(ours, user_id=2, item_id=3)
    assert both[USER.join_key] == 2 and both[ITEM.join_key] == 3
    assert len(both[f"{ITEM_TRANSH.name}__transh"]) == len(both[f"{USER_TRANSH.name}__transh"])
    assert online_features(ours, user_id=0)[f"{USER_GRAPH_STATS.name}__friends_active_share"] is None  # NaN: missing


def test_incremental_runs_match_feast(store_settings: MakeSettings, online_store: dict) -> None:
    ours, theirs = pair(store_settings, online_store)
    rng = np.random.default_rng(5)
    write_to_both(ours, theirs, np.arange(N), T1, CREATED_1, rng)
    apply(ours)
    apply(theirs)
    # never materialized: graphrec starts at the epoch (stock Feast would start a ttl-0 view a year back, after these
    # 2011 rows, and write nothing)
    materialize(feature_store(ours), incremental=True, end=BETWEEN)
    local_engine(theirs).materialize(EPOCH, BETWEEN)
    assert_same_online_state(ours, theirs, N)
    write_to_both(ours, theirs, np.arange(0, N, 3), T2, CREATED_2, rng)
    materialize(feature_store(ours), incremental=True, end=END)
    local_engine(theirs).materialize_incremental(END)

    assert_same_online_state(ours, theirs, N)
    assert intervals(ours) == intervals(theirs) == {spec.name: [(EPOCH, BETWEEN), (BETWEEN, END)] for spec in VIEWS}


def test_stock_feast_cli_runs_graphrec_engine(store_settings: MakeSettings, online_store: dict) -> None:
    ours, theirs = pair(store_settings, online_store)
    rng = np.random.default_rng(11)
    write_to_both(ours, theirs, np.arange(N), T1, CREATED_1, rng)
    apply(ours)
    apply(theirs)
    first = stock_feast(ours, "materialize", EPOCH.isoformat(), BETWEEN.isoformat())
    local_engine(theirs).materialize(EPOCH, BETWEEN)
    write_to_both(ours, theirs, np.arange(0, N, 2), T2, CREATED_2, rng)
    second = stock_feast(ours, "materialize-incremental", END.isoformat())
    local_engine(theirs).materialize_incremental(END)

    for run, rows in ((first, N), (second, N // 2)):  # graphrec's engine logs each view it wrote
        logged = [line for line in run.stderr.splitlines() if "featurestore.engine" in line]
        assert all(any(f"{spec.name}: {rows} rows" in line for line in logged) for spec in VIEWS), run.stderr
    assert_same_online_state(ours, theirs, N)
    assert intervals(ours) == intervals(theirs) == {spec.name: [(EPOCH, BETWEEN), (BETWEEN, END)] for spec in VIEWS}


def test_window_end_keeps_later_snapshots_out(store_settings: MakeSettings) -> None:
    ours, theirs = pair(store_settings, {"online_store": OnlineStoreKind.sqlite})
    write_two_snapshots(ours, 20)
    copy_offline(ours, theirs)
    apply(ours)
    apply(theirs)
    materialize(feature_store(ours), start=T1, end=BETWEEN)
    local_engine(theirs).materialize(T1, BETWEEN)
    assert_same_online_state(ours, theirs, 20)


def test_killed_run_then_rerun_equals_clean_run(store_settings: MakeSettings, online_store: dict) -> None:
    interrupted, clean = pair(store_settings, online_store)
    rng = np.random.default_rng(7)
    write_to_both(interrupted, clean, np.arange(N), T1, CREATED_1, rng)
    for settings in (interrupted, clean):  # the online store first holds the older values
        apply(settings)
        materialize(feature_store(settings), end=BETWEEN)
    write_to_both(interrupted, clean, np.arange(N), T2, CREATED_2, rng)
    before = online_dump(interrupted)

    env = os.environ | {
        "GRAPHREC_WORK_DIR": str(interrupted.work_dir),
        "GRAPHREC_ONLINE_STORE": interrupted.online_store.value,
        "GRAPHREC_REDIS_URL": interrupted.redis_url,
        "GRAPHREC_MLFLOW_TRACKING_URI": interrupted.mlflow_uri,
    }
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    partial = online_dump(interrupted)
    assert partial != before  # the first batch was written...
    assert intervals(interrupted) == {spec.name: [(EPOCH, BETWEEN)] for spec in VIEWS}  # ...but no watermark moved

    materialize(feature_store(interrupted), end=END)
    materialize(feature_store(clean), end=END)
    assert_same_online_state(interrupted, clean, N)
    assert intervals(interrupted) == intervals(clean)


def test_unknown_view_is_named(store_settings: MakeSettings) -> None:
    settings = store_settings()
    apply(settings)
    with pytest.raises(ValueError, match="no_such_view"):
        materialize(feature_store(settings), views=["no_such_view"])


def test_other_online_stores_are_refused_by_name(store_settings: MakeSettings) -> None:
    settings = store_settings()
    remote = {"type": "remote", "path": "http://localhost:6566"}
    config = RepoConfig(**(config_dict(settings) | {"online_store": remote}), repo_path=settings.feature_repo)
    engine = GraphrecComputeEngine(repo_config=config, offline_store=None, online_store=None)
    with pytest.raises(UnsupportedByEngine, match="not 'remote'.*batch_engine: local"):
        engine.materialize(registry=None, tasks=[])


def test_views_it_cannot_write_are_refused_by_name(tmp_path: Path) -> None:
    source = FileSource(
        name="tags", path=str(tmp_path), timestamp_field="event_timestamp", created_timestamp_column="created"
    )
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    view = FeatureView(
        name="user_tags",
        entities=[user],
        source=source,
        schema=[Field(name="user_id", dtype=Int64), Field(name="tag", dtype=String)],
    )
    with pytest.raises(UnsupportedByEngine, match="'user_tags'.*tag: String"):
        view_spec_of(view)
    counts = FeatureView(
        name="user_count",
        entities=[user],
        source=source,
        schema=[Field(name="user_id", dtype=Int64), Field(name="count", dtype=Int64)],
    )
    assert view_spec_of(counts).feature_names == ["count"]


def test_int64_id_lists_match_feast_and_serve_exactly(store_settings: MakeSettings, online_store: dict) -> None:
    """Id arrays of a published version's views (int64 lists): the engine stores Feast's bytes, serving reads every
    id back exactly as int64, ids above 2**32 and 2**53 included."""
    ours, theirs = pair(store_settings, online_store)
    entry = ModelViews("ids", 1, {"nbr_id": "int64_list", "node_id": "int64"}, {"nbr_id": "int64_list"})
    big = [2**40 + 3, 2**63 - 1, -(2**63), 2**32 + 1, -1, 0]  # above 2**32 and 2**53, and the int64 extremes
    rng = np.random.default_rng(3)
    ids = rng.integers(-(2**63), 2**63 - 1, size=(N, len(big)), dtype=np.int64)
    ids[0] = big
    for settings in (ours, theirs):
        save_manifest(settings.work_dir, [entry])
        for spec in entry.view_specs():
            frame = {spec.entity.join_key: np.arange(N), EVENT_TIMESTAMP: T1, CREATED_TIMESTAMP: CREATED_1}
            frame |= {"nbr_id": list(ids)} | ({"node_id": ids[:, 0]} if "node_id" in spec.feature_names else {})
            write_snapshot(settings.offline_dir, spec, pd.DataFrame(frame))
        apply(settings)
    names = [spec.name for spec in entry.view_specs()]
    local_engine(theirs).materialize(EPOCH, END, feature_views=names)
    materialize(feature_store(ours), end=END, views=names)

    assert online_dump(ours) == online_dump(theirs)  # the same stored bytes as Feast's own encoding
    user_view, item_view = names
    for settings in (ours, theirs):  # both stores hold every id, and serving reads them back exactly
        reader = FeatureReader(feature_store(settings))
        row = reader.user_row(user_view, ["nbr_id", "node_id"], 0)
        assert row is not None and row["nbr_id"].dtype == np.int64 and row["nbr_id"][0].tolist() == big
        assert row["node_id"].tolist() == [big[0]]
        table = reader.item_table(item_view, ["nbr_id"])
        assert table.columns["nbr_id"].dtype == np.int64 and np.array_equal(table.columns["nbr_id"], ids)


def test_int64_list_bytes_equal_feasts_own_encoding() -> None:
    rows = [[2**40 + 3, -1, 0, 2**63 - 1, -(2**63)], [], [5], [127, 128, 2**32 + 1]]
    rows += [list(r) for r in np.random.default_rng(1).integers(-(2**63), 2**63 - 1, (50, 7), dtype=np.int64)]
    column = pa.array(rows, type=pa.list_(pa.int64()))
    expected = [v.SerializeToString() for v in python_values_to_proto_values(rows, ValueType.INT64_LIST)]
    assert feature_values(CatalogueType.int64_list, column) == expected
    assert feature_values(CatalogueType.int64_list, column.slice(2, 30)) == expected[2:32]  # offsets honoured
    assert feature_values(CatalogueType.int64_list, column.slice(0, 0)) == []
