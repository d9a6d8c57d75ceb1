"""Recovery and honest readiness (issue 10, items 5 and 6): the service follows an online store file or an MLflow
registry database that is deleted, corrupted or replaced under it, without a restart (and without /admin/reload),
/readyz is 503 while the online store cannot be read, and an alias naming a missing version is a refresh error.

The world is shared by the module: every test puts back what it broke before it ends.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from feature_repo.model_views import version_view_names
from featurestore.config import feature_store
from graphrec.settings import Settings
from graphrec.testing import wait_until
from serving.api.routes.health import DEGRADED_MIN_ANSWERS
from serving.app import create_app
from serving.binding import BindingManager, ModelSource, sqlite_database
from serving.contract import CHAMPION
from serving.features import FeatureReader
from tests.support.serving import PublishedVersion, count_refreshes

World = tuple[Settings, PublishedVersion, PublishedVersion]
REQUEST = {"user_id": 1, "item_ids": [0, 1, 2, 3]}
WAIT_S = 60.0
MISSING_VERSION = "99"


@pytest.fixture
def service(serving_world: World) -> Iterator[TestClient]:
    """The app on the world, polling every 0.05 s."""
    settings = serving_world[0].model_copy(update={"serving_poll_interval_s": 0.05})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def registry_file(settings: Settings) -> Path:
    """The SQLite file of the world's MLflow registry."""
    database = sqlite_database(settings.mlflow_uri)
    assert database is not None, settings.mlflow_uri
    return database


def put_in_place(source: Path, target: Path) -> None:
    """Copy ``source`` next to ``target`` and move it over ``target`` in one step: a new file (a new inode), as a
    restore or a deployment does it."""
    staged = target.with_name(f"{target.name}.staged")
    shutil.copyfile(source, staged)
    os.replace(staged, target)


def predictions(client: TestClient) -> list[dict[str, object]]:
    """The scores of REQUEST, asserting a 200 whose every item the model scored from online features."""
    response = client.post("/v1/predict", json=REQUEST)
    assert response.status_code == 200, response.text
    scores = response.json()["scores"]
    assert [s["source"] for s in scores] == ["model"] * len(REQUEST["item_ids"]), scores
    return scores


def set_alias_in_file(database: Path, name: str, alias: str, version: str) -> None:
    """Point ``alias`` at ``version`` by editing the registry file directly: the only way to make it name a version
    that does not exist (MLflow drops the aliases of a version it deletes)."""
    with sqlite3.connect(database) as connection:
        changed = connection.execute(
            "UPDATE registered_model_aliases SET version = ? WHERE name = ? AND alias = ?", (int(version), name, alias)
        ).rowcount
    connection.close()
    assert changed == 1


def test_deleted_online_store_is_503_until_put_back(service: TestClient, serving_world: World, tmp_path: Path) -> None:
    online = serving_world[0].online_sqlite_path
    before = predictions(service)
    backup = tmp_path / "online.db"
    shutil.copyfile(online, backup)
    online.unlink()
    try:
        ready = service.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["detail"] == f"StoreUnavailable: online store file {online} does not exist"
        assert service.head("/readyz").status_code == 503
        assert service.post("/v1/predict", json=REQUEST).status_code == 503
        assert not online.exists(), "a read recreated the deleted online store file"
    finally:
        put_in_place(backup, online)
    assert service.get("/readyz").status_code == 200  # no restart, no /admin/reload: the next read reopens the file
    assert predictions(service) == before


def test_corrupted_online_store_is_503_until_put_back(
    service: TestClient, serving_world: World, tmp_path: Path
) -> None:
    online = serving_world[0].online_sqlite_path
    before = predictions(service)
    backup = tmp_path / "online.db"
    shutil.copyfile(online, backup)
    online.write_bytes(b"this is not an SQLite database " * 256)  # in place: the open connection sees it
    try:
        ready = service.get("/readyz")
        assert ready.status_code == 503, ready.text
        detail = ready.json()["detail"]
        assert detail.startswith("StoreUnavailable: online store read failed: DatabaseError")
        assert "file is not a database" in detail
        assert service.head("/readyz").status_code == 503
    finally:
        put_in_place(backup, online)
    assert service.get("/readyz").status_code == 200
    assert predictions(service) == before


def test_registry_database_deleted_then_replaced_is_followed(
    service: TestClient, serving_world: World, tmp_path: Path
) -> None:
    settings, first, second = serving_world
    manager = service.app.state.service.manager
    database = registry_file(settings)
    original = tmp_path / "original.db"
    shutil.copyfile(database, original)
    promoted = tmp_path / "promoted.db"  # a copy of the registry where @champion names the second version
    shutil.copyfile(database, promoted)
    MlflowClient(tracking_uri=f"sqlite:///{promoted}", registry_uri=f"sqlite:///{promoted}").set_registered_model_alias(
        first.name, CHAMPION, second.version
    )
    database.unlink()
    try:
        missing = f"RegistryUnavailable: MLflow registry database {database} does not exist"
        wait_until(lambda: manager.last_error == missing, WAIT_S, "the poller reporting the deleted registry")
        assert not database.exists(), "a registry read recreated the deleted database"
        ready = service.get("/readyz")  # the previous binding keeps serving; readiness shows why nothing moves
        assert ready.status_code == 200 and ready.json()["detail"] == missing
        put_in_place(promoted, database)
        wait_until(  # the swap lands mid-refresh; the error clears when that refresh finishes
            lambda: manager.bindings[CHAMPION].version == second.version and manager.last_error is None,
            WAIT_S,
            "the swap to the promoted version and the cleared refresh error",
        )
        model = service.get("/v1/model").json()
        assert model["version"] == second.version and model["last_refresh_error"] is None
    finally:
        put_in_place(original, database)
    wait_until(lambda: manager.bindings[CHAMPION].version == first.version, WAIT_S, "the swap back after restoring")


def test_dangling_alias_keeps_a_fresh_service_unready(serving_world: World) -> None:
    settings, first, _ = serving_world
    database = registry_file(settings)
    set_alias_in_file(database, first.name, CHAMPION, MISSING_VERSION)
    try:
        with TestClient(create_app(settings, poll=False)) as client:
            ready = client.get("/readyz")
            assert client.head("/readyz").status_code == 503
    finally:
        set_alias_in_file(database, first.name, CHAMPION, first.version)
    assert ready.status_code == 503
    assert ready.json()["detail"] == (
        f"DanglingAlias: alias {CHAMPION} of {first.name} points at version {MISSING_VERSION}, which does not exist"
    )


def test_dangling_alias_is_logged_once_while_the_binding_keeps_serving(
    serving_world: World, caplog: pytest.LogCaptureFixture
) -> None:
    settings, first, _ = serving_world
    caplog.set_level(logging.INFO, logger="serving")
    manager = BindingManager(first.name, ModelSource(settings.mlflow_uri), FeatureReader(feature_store(settings)))
    manager.refresh()
    bound = manager.bindings[CHAMPION]
    assert bound is not None and bound.version == first.version
    polls = count_refreshes(manager)
    database = registry_file(settings)
    set_alias_in_file(database, first.name, CHAMPION, MISSING_VERSION)
    manager.start(0.05)
    try:
        wait_until(lambda: manager.last_error is not None, WAIT_S, "the poller meeting the dangling alias")
        seen = polls()
        wait_until(lambda: polls() >= seen + 5, WAIT_S, "five more polls of the dangling alias")
        assert manager.bindings[CHAMPION] is bound
    finally:
        set_alias_in_file(database, first.name, CHAMPION, first.version)
    try:
        wait_until(lambda: manager.last_error is None, WAIT_S, "the poller recovering")
    finally:
        manager.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "serving.binding" and r.levelno >= logging.WARNING]
    message = f"alias {CHAMPION} of {first.name} points at version {MISSING_VERSION}, which does not exist"
    assert lines == [f"binding refresh failed, still serving the previous bindings: DanglingAlias: {message}"]
    assert manager.bindings[CHAMPION] is bound


def test_emptied_online_store_stays_ready_but_says_it_is_degraded(
    service: TestClient, serving_world: World, tmp_path: Path
) -> None:
    settings, champion = serving_world[0], serving_world[1]
    online = settings.online_sqlite_path
    backup = tmp_path / "online.db"
    shutil.copyfile(online, backup)
    _, user_view, _ = version_view_names(champion.name, champion.version)
    with sqlite3.connect(online) as connection:  # every user row of the champion gone, the store itself readable
        [table] = [t for (t,) in connection.execute("SELECT name FROM sqlite_master") if t.endswith(f"_{user_view}")]
        emptied = connection.execute(f'DELETE FROM "{table}"').rowcount
    connection.close()
    assert emptied > 0
    try:
        for _ in range(DEGRADED_MIN_ANSWERS):
            answer = service.post("/v1/predict", json=REQUEST)
            assert answer.status_code == 200 and answer.json()["fallback"] is not None, answer.text
        ready = service.get("/readyz")
        assert ready.status_code == 200, ready.text  # fallback answers are answers: no replica is taken out
        detail = ready.json()["detail"]
        assert detail.startswith(f"degraded: {DEGRADED_MIN_ANSWERS} of the last {DEGRADED_MIN_ANSWERS} answers used")
    finally:
        put_in_place(backup, online)
    for _ in range(DEGRADED_MIN_ANSWERS + 1):  # the window forgets: most recent answers come from the model again
        predictions(service)
    assert service.get("/readyz").json()["detail"] is None
