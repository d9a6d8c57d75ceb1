"""Offline snapshots, Feast definitions and the feature store: write_snapshot's contract, apply, what `feast apply`
finds, the stock CLI, and point-in-time training sets."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from feast import FileSource
from feast.feature_view import DUMMY_ENTITY_NAME
from feast.repo_operations import parse_repo

from feature_repo.catalog import (
    CREATED_TIMESTAMP,
    EVENT_TIMESTAMP,
    FAMILIES,
    GRAPH_FEATURES_SERVICE,
    ITEM,
    ITEM_TRANSH,
    USER,
    USER_GRAPH_STATS,
    USER_TRANSH,
    VIEWS,
    FeatureSpec,
    ValueType,
    ViewSpec,
)
from feature_repo.objects import family_service_name
from featurestore.offline import SnapshotError, read_latest, read_snapshots, snapshot_files, write_snapshot
from featurestore.store import apply, feature_store, training_set
from graphrec.settings import Settings
from tests.support.snapshots import CREATED_1, CREATED_2, DIM, T1, T2, random_frame, write_two_snapshots

MakeSettings = Callable[..., Settings]  # the settings_for / store_settings fixtures


def test_snapshots_are_kept_and_latest_wins(settings_for: MakeSettings) -> None:
    settings = settings_for()
    write_two_snapshots(settings, 10)
    files = snapshot_files(settings.offline_dir, USER_TRANSH)
    assert [f.name for f in files] == [
        "event-20110501T000000Z__created-20260101T000000Z.parquet",
        "event-20110601T123015.250000Z__created-20260102T030405Z.parquet",
    ]
    latest = read_latest(settings.offline_dir, USER_TRANSH)
    assert latest[USER.join_key].tolist() == list(range(10))
    expected = [T2 if user % 2 == 0 else T1 for user in range(10)]
    assert [t.to_pydatetime() for t in latest[EVENT_TIMESTAMP]] == expected
    assert read_latest(settings.offline_dir, USER_TRANSH, as_of=T1)[EVENT_TIMESTAMP].eq(pd.Timestamp(T1)).all()
    assert read_snapshots(settings.offline_dir, USER_TRANSH, start=T1 + timedelta(seconds=1)).num_rows == 5
    assert read_snapshots(settings.offline_dir, USER_TRANSH).schema.field("transh").type == pa.list_(pa.float32())


def test_created_breaks_event_time_ties(settings_for: MakeSettings) -> None:
    settings = settings_for()
    rng = np.random.default_rng(1)
    later = random_frame(USER_TRANSH, np.arange(3), T1, CREATED_2, rng)
    write_snapshot(settings.offline_dir, USER_TRANSH, later)
    write_snapshot(settings.offline_dir, USER_TRANSH, random_frame(USER_TRANSH, np.arange(3), T1, CREATED_1, rng))
    latest = read_latest(settings.offline_dir, USER_TRANSH)
    assert np.array_equal(np.stack(latest["transh"]), np.stack(later["transh"]))


BAD_INPUTS = {
    "missing column": ("uu_degree", lambda f: f.drop(columns=["uu_degree"])),
    "extra column": ("ui_degre", lambda f: f.assign(ui_degre=1)),
    "float64 for float32": ("friends_active_share", lambda f: f.assign(friends_active_share=0.5)),
    "text for int64": ("ui_degree", lambda f: f.assign(ui_degree="many")),
    "float for int64": ("two_hop_reach", lambda f: f.assign(two_hop_reach=1.5)),
    "null int64": ("activity_tercile", lambda f: f.assign(activity_tercile=[None] + [1] * (len(f) - 1))),
    "mixed array lengths": (
        "mean_item_transh",
        lambda f: f.assign(mean_item_transh=[np.zeros(DIM + (i == 3), np.float32) for i in range(len(f))]),
    ),
    "float64 arrays": ("mean_friend_transh", lambda f: f.assign(mean_friend_transh=list(np.zeros((len(f), DIM))))),
    "naive timestamps": (EVENT_TIMESTAMP, lambda f: f.assign(event_timestamp=pd.Timestamp("2011-05-01"))),
    "repeated entity": (USER.join_key, lambda f: f.assign(user_id=0)),
}


@pytest.mark.parametrize("column,change", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_snapshot_is_refused_and_nothing_written(
    settings_for: MakeSettings, column: str, change: Callable[[pd.DataFrame], pd.DataFrame]
) -> None:
    settings = settings_for()
    frame = change(random_frame(USER_GRAPH_STATS, np.arange(6), T1, CREATED_1, np.random.default_rng(2)))
    with pytest.raises(SnapshotError) as refused:
        write_snapshot(settings.offline_dir, USER_GRAPH_STATS, frame)
    assert USER_GRAPH_STATS.name in str(refused.value) and repr(column) in str(refused.value)
    folder = settings.offline_dir / USER_GRAPH_STATS.name
    assert not folder.exists() or not any(folder.iterdir())


def test_existing_snapshot_is_never_replaced(settings_for: MakeSettings) -> None:
    settings = settings_for()
    rng = np.random.default_rng(3)
    path = write_snapshot(
        settings.offline_dir, ITEM_TRANSH, random_frame(ITEM_TRANSH, np.arange(4), T1, CREATED_1, rng)
    )
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match=ITEM_TRANSH.name):
        write_snapshot(settings.offline_dir, ITEM_TRANSH, random_frame(ITEM_TRANSH, np.arange(4), T1, CREATED_1, rng))
    assert path.read_bytes() == before and len(list(path.parent.iterdir())) == 1


def test_apply_registers_views_and_services(store_settings: MakeSettings) -> None:
    settings = store_settings()
    apply(settings)
    apply(settings)  # idempotent
    store = feature_store(settings)
    views = {fv.name: fv for fv in store.list_feature_views()}
    assert sorted(views) == sorted(spec.name for spec in VIEWS)
    for spec in VIEWS:
        view = views[spec.name]
        assert [f.name for f in view.features] == spec.feature_names and view.ttl == timedelta(0)
        assert isinstance(view.batch_source, FileSource)
        assert view.batch_source.path == str((settings.offline_dir / spec.name).resolve())
    services = {s.name: s for s in store.list_feature_services()}
    assert {GRAPH_FEATURES_SERVICE, *map(family_service_name, FAMILIES)} == set(services)
    assert {p.name for p in services[GRAPH_FEATURES_SERVICE].feature_view_projections} == set(views)
    assert sorted(e.name for e in store.list_entities()) == sorted([USER.name, ITEM.name])


def test_definitions_module_is_what_feast_apply_finds(
    settings_for: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for()
    monkeypatch.setenv("GRAPHREC_WORK_DIR", str(settings.work_dir))  # the module reads the environment's settings
    monkeypatch.delitem(sys.modules, "feature_repo.definitions", raising=False)  # so Feast imports it afresh
    monkeypatch.chdir(settings.feature_repo.parent)  # Feast names repo modules relative to the working directory
    found = parse_repo(settings.feature_repo)
    assert sorted(fv.name for fv in found.feature_views) == sorted(spec.name for spec in VIEWS)
    assert sorted(e.name for e in found.entities if e.name != DUMMY_ENTITY_NAME) == sorted([USER.name, ITEM.name])
    assert {s.name for s in found.feature_services} == {GRAPH_FEATURES_SERVICE, *map(family_service_name, FAMILIES)}
    assert len(found.data_sources) == len(VIEWS)


def test_stock_feast_cli_lists_views(store_settings: MakeSettings) -> None:
    settings = store_settings()
    apply(settings)  # also writes <work_dir>/feature_store.yaml for the CLI
    env = os.environ | {"FEAST_FS_YAML_FILE_PATH": str(settings.work_dir / "feature_store.yaml")}
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "feast"), "-c", str(settings.feature_repo), "feature-views", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["NAME"])
    names = [line.split()[0] for line in lines[header + 1 :] if line.strip()]  # the NAME column, row by row
    assert sorted(names) == sorted(spec.name for spec in VIEWS), listed.stdout


def test_training_set_joins_the_snapshot_in_force_and_tags_the_run(
    store_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = store_settings()
    write_two_snapshots(settings, 6)
    apply(settings)
    moments = [T1 - timedelta(days=1), T1 + timedelta(days=1), T2 + timedelta(days=1)]
    entity_df = pd.DataFrame(
        [(user, user, moment) for user in (2, 3) for moment in moments],
        columns=[USER.join_key, ITEM.join_key, EVENT_TIMESTAMP],
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.mlflow_uri)
    mlflow.set_tracking_uri(settings.mlflow_uri)  # earlier tests may have set another global URI
    with mlflow.start_run() as run:
        joined = training_set(settings, entity_df)
    tags = mlflow.MlflowClient(settings.mlflow_uri).get_run(run.info.run_id).data.tags
    assert tags["feast.feature_service"] == GRAPH_FEATURES_SERVICE and tags["feast.retrieval_type"] == "historical"

    joined = joined.sort_values([USER.join_key, EVENT_TIMESTAMP]).reset_index(drop=True)
    snapshots = pd.concat(
        pd.read_parquet(path).assign(snapshot=i)
        for i, path in enumerate(snapshot_files(settings.offline_dir, USER_TRANSH))
    )
    for row in joined.itertuples(index=False):
        user, moment = getattr(row, USER.join_key), getattr(row, EVENT_TIMESTAMP)
        embedding = getattr(row, f"{USER_TRANSH.name}__transh")
        candidates = snapshots[(snapshots[USER.join_key] == user) & (snapshots[EVENT_TIMESTAMP] <= moment)]
        if candidates.empty:
            assert embedding is None or (np.ndim(embedding) == 0 and pd.isna(embedding))
        else:
            expected = candidates.sort_values(EVENT_TIMESTAMP).iloc[-1]["transh"]
            assert np.array_equal(np.asarray(embedding, dtype=np.float32), expected)
    assert len(joined) == 6 and f"{USER_GRAPH_STATS.name}__ui_degree" in joined.columns


def test_training_set_names_missing_entity_columns_and_unbuilt_views(store_settings: MakeSettings) -> None:
    settings = store_settings()
    apply(settings)
    with pytest.raises(ValueError, match=ITEM.join_key):
        training_set(settings, pd.DataFrame({USER.join_key: [1], EVENT_TIMESTAMP: [pd.Timestamp(T1)]}))
    entity_df = pd.DataFrame({USER.join_key: [1], ITEM.join_key: [1], EVENT_TIMESTAMP: [pd.Timestamp(T1)]})
    with pytest.raises(ValueError, match=USER_GRAPH_STATS.name):
        training_set(settings, entity_df)


ID_VIEW = ViewSpec(
    "ids", USER, "test", (FeatureSpec("nbr_id", ValueType.int64_list, "neighbour ids"),), "int64 id arrays"
)


def id_frame(ids: list) -> pd.DataFrame:
    """A snapshot frame of ID_VIEW: one user per row of ``ids``."""
    return pd.DataFrame(
        {USER.join_key: np.arange(len(ids)), EVENT_TIMESTAMP: pd.Timestamp(T1), CREATED_TIMESTAMP: CREATED_1}
    ).assign(nbr_id=ids)


def test_int64_id_arrays_are_stored_exactly(settings_for: MakeSettings) -> None:
    settings = settings_for()
    ids = [np.array([2**40 + 3, 2**63 - 1, -1]), np.array([-(2**63), 2**32 + 1, 0])]
    write_snapshot(settings.offline_dir, ID_VIEW, id_frame(ids))
    assert read_snapshots(settings.offline_dir, ID_VIEW).schema.field("nbr_id").type == pa.list_(pa.int64())
    latest = read_latest(settings.offline_dir, ID_VIEW)["nbr_id"]
    assert latest.iloc[0].dtype == np.int64 and [v.tolist() for v in latest] == [v.tolist() for v in ids]


BAD_ID_ARRAYS = {
    "float arrays": [np.array([1.0, 2.0]), np.array([3.0, 4.0])],
    "above int64": [np.array([2**63, 1], dtype=np.uint64), np.array([2, 3], dtype=np.uint64)],
    "null element": [[1, None], [2, 3]],
    "mixed lengths": [np.array([1, 2]), np.array([3])],
}


@pytest.mark.parametrize("ids", BAD_ID_ARRAYS.values(), ids=BAD_ID_ARRAYS.keys())
def test_bad_id_arrays_are_refused_by_name(settings_for: MakeSettings, ids: list) -> None:
    settings = settings_for()
    with pytest.raises(SnapshotError, match="'ids'.*'nbr_id'"):
        write_snapshot(settings.offline_dir, ID_VIEW, id_frame(ids))
    assert not snapshot_files(settings.offline_dir, ID_VIEW)
