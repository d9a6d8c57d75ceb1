"""The Ray engine (``GRAPHREC_ENGINE=ray``, issue 16): ``graphrec features build && graphrec features materialize``
on a local Ray (2 CPUs, a small object store) leaves the same offline features and the same online bytes as the
local engine; the aggregates kernel gives a node the same bits in any partition; view key ranges cover every row
once; an unreachable Ray address is named at once instead of retried for minutes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_repo.catalog import ITEM_GRAPH_STATS, ITEM_TRANSH, USER, USER_GRAPH_STATS, USER_TRANSH, VIEWS
from featurestore.config import feature_store
from featurestore.internals import batch_engine_of
from featurestore.materialize import materialize
from featurestore.offline import KeyRange, arrow_schema, key_ranges, read_files, read_latest, snapshot_files
from featurestore.ray_engine import RayGraphrecComputeEngine
from featurestore.ray_runtime import RayTarget, RayUnavailable, ray_connected
from featurestore.store import apply
from graphrec.settings import EngineKind, Settings
from graphrec.testing import free_port
from tests.support.snapshots import random_frame
from training.features.blocks import Sources, item_block, user_block
from training.features.reach import two_hop_index

GRAPHREC = str(Path(sys.executable).with_name("graphrec"))
BUILT_VIEWS = (USER_TRANSH, ITEM_TRANSH, USER_GRAPH_STATS, ITEM_GRAPH_STATS)
N_USERS = 2_000


def online_rows(settings: Settings) -> dict[str, list]:
    """Every stored online value (entity key, feature, value bytes, event time) per SQLite table; the row's
    ``created_ts`` is left out: it is the build's wall-clock time."""
    query = 'SELECT entity_key, feature_name, value, event_ts FROM "{}" ORDER BY entity_key, feature_name'
    with closing(sqlite3.connect(settings.online_sqlite_path)) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {table: connection.execute(query.format(table)).fetchall() for table in tables}


def feature_arrays(settings: Settings) -> dict[str, np.ndarray]:
    """The latest snapshot's features of every built view, as arrays (id order)."""
    arrays = {}
    for spec in BUILT_VIEWS:
        frame = read_latest(settings.offline_dir, spec).sort_values(spec.entity.join_key)
        for name in spec.feature_names:
            values = frame[name].to_numpy()
            arrays[f"{spec.name}.{name}"] = np.stack(values) if values.dtype == object else values
    return arrays


def test_ray_build_and_materialize_equal_the_local_engine(tmp_path: Path, shared_mlflow_uri: str) -> None:
    from training.features.jobs import FeatureJobConfig, build_features
    from training.synth.generator import SynthConfig, generate_dataset

    generate_dataset(SynthConfig(n_users=N_USERS, seed=3), tmp_path / "data")
    common = {"dataset": str(tmp_path / "data"), "mlflow_tracking_uri": shared_mlflow_uri}
    on_ray = Settings(
        work_dir=tmp_path / "ray", engine=EngineKind.ray, ray_num_cpus=2, ray_object_store_mb=100, **common
    )
    local = Settings(work_dir=tmp_path / "local", **common)
    env = os.environ | {
        "GRAPHREC_ENGINE": "ray",
        "GRAPHREC_RAY_NUM_CPUS": "2",
        "GRAPHREC_RAY_OBJECT_STORE_MB": "100",
        "GRAPHREC_DATASET": common["dataset"],
        "GRAPHREC_WORK_DIR": str(on_ray.work_dir),
        "GRAPHREC_MLFLOW_TRACKING_URI": shared_mlflow_uri,
    }
    env.pop("GRAPHREC_RAY_ADDRESS", None)

    def graphrec(*arguments: str) -> None:
        done = subprocess.run([GRAPHREC, *arguments], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"graphrec {' '.join(arguments)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    graphrec("features", "build", "--only", "transh", "--only", "graph_stats", "--epochs", "2")
    apply(on_ray)
    assert type(batch_engine_of(feature_store(on_ray))) is RayGraphrecComputeEngine  # what the CLI's Feast resolves
    graphrec("features", "materialize")
    assert not any((on_ray.work_dir / "ray-staging").glob("*")), "the Ray staging folder was left behind"

    two_epochs = FeatureJobConfig(transh=replace(FeatureJobConfig().transh, epochs=2))  # as `--epochs 2`
    build_features(local, ("transh", "graph_stats"), config=two_epochs)
    apply(local)
    materialize(feature_store(local))

    ours, theirs = feature_arrays(on_ray), feature_arrays(local)
    assert ours.keys() == theirs.keys()
    for name, values in ours.items():
        assert values.dtype == theirs[name].dtype and values.tobytes() == theirs[name].tobytes(), name
    ray_rows, local_rows = online_rows(on_ray), online_rows(local)
    for spec in BUILT_VIEWS:
        table = f"graphrec_{spec.name}"
        assert len(ray_rows[table]) > 0 and ray_rows[table] == local_rows[table], table
    sample = [{USER.join_key: int(u)} for u in np.random.default_rng(0).choice(N_USERS, 50, replace=False)]
    refs = [f"{spec.name}:{name}" for spec in (USER_TRANSH, USER_GRAPH_STATS) for name in spec.feature_names]
    read = [feature_store(s).get_online_features(features=refs, entity_rows=sample).to_dict() for s in (on_ray, local)]
    assert read[0] == read[1]


def random_sources(rng: np.random.Generator, n_users: int, n_items: int, n_entities: int) -> Sources:
    return Sources(
        user_emb=rng.normal(size=(n_users, 8)).astype(np.float32),
        entity_emb=rng.normal(size=(n_entities, 8)).astype(np.float32),
        active=rng.random(n_users) < 0.4,
        terciles=rng.integers(0, 3, n_users),
        n_items=n_items,
        n_kg_relations=3,
    )


@pytest.mark.parametrize("exact_max_pairs", [10**12, 0], ids=["exact-reach", "sketched-reach"])
def test_a_node_gets_the_same_bits_in_any_partition(exact_max_pairs: int) -> None:
    rng = np.random.default_rng(7)
    n_users, n_items, n_entities = 300, 80, 120
    sources = random_sources(rng, n_users, n_items, n_entities)
    users, items = rng.integers(0, n_users, 3000), rng.integers(0, n_items, 3000)  # duplicates included
    friends = rng.integers(0, n_users, (2, 900))
    kg = (rng.integers(0, n_entities, 700), rng.integers(0, n_items, 700), rng.integers(0, 6, 700))
    reach = two_hop_index(items, users, n_items, n_users, exact_max_pairs)
    whole_users = user_block(0, n_users, (items, users), (friends[0], friends[1]), reach, sources)
    whole_items = item_block(0, n_items, (users, items), kg, sources)
    for bounds in ([0, 1, 150, 299, 300], [0, 300]):
        parts = []
        for low, high in zip(bounds[:-1], bounds[1:], strict=True):
            mine, theirs = (users >= low) & (users < high), (friends[1] >= low) & (friends[1] < high)
            parts.append(user_block(low, high, (items[mine], users[mine]), tuple(friends[:, theirs]), reach, sources))
        for name, values in whole_users.items():
            assert np.concatenate([p[name] for p in parts]).tobytes() == values.tobytes(), name
    parts = []
    for low, high in ((0, 33), (33, 80)):
        mine, kg_mine = (items >= low) & (items < high), (kg[1] >= low) & (kg[1] < high)
        parts.append(item_block(low, high, (users[mine], items[mine]), tuple(k[kg_mine] for k in kg), sources))
    for name, values in whole_items.items():
        assert np.concatenate([p[name] for p in parts]).tobytes() == values.tobytes(), name
    # against a direct count: two-hop reach of user 0 is the distinct other users sharing one of its items
    shared = set(users[np.isin(items, items[users == 0])]) - {0}
    assert abs(whole_users["two_hop_reach"][0] - len(shared)) <= (0 if exact_max_pairs else 3)


def test_key_ranges_cover_every_row_once(tmp_path: Path) -> None:
    from featurestore.offline import write_snapshot

    spec = VIEWS[0]
    ids = np.array([3, 2**32 + 1, 2**40, 2**62 + 5, 17], dtype=np.int64)
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    write_snapshot(tmp_path, spec, random_frame(spec, ids, moment, moment, np.random.default_rng(0)))
    files = snapshot_files(tmp_path, spec)
    ranges = key_ranges(files, spec.entity.join_key, 3)
    assert len(ranges) == 3 and all(isinstance(r, KeyRange) for r in ranges)
    seen = pd.concat([read_files(files, arrow_schema(spec), keys=r).to_pandas()[spec.entity.join_key] for r in ranges])
    assert sorted(seen.tolist()) == sorted(ids.tolist())
    assert key_ranges(files, spec.entity.join_key, 1) == [None]


def test_an_unreachable_ray_address_is_named_at_once() -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(RayUnavailable, match=rf"no Ray cluster answers at '{address}' \(GRAPHREC_RAY_ADDRESS\)"):
        ray_connected(RayTarget(address=address))
    with pytest.raises(RayUnavailable, match="is not host:port"):
        ray_connected(RayTarget(address="head-node"))
