"""Fixtures shared by the test modules: datasets, settings on temporary work dirs, the MLflow store, a redis-server
per test and the online stores to run against. Plain helpers live in ``tests/support/``.

Tests asking for ``redis_url`` (or ``online_store`` = redis) are skipped, with the reason, when ``redis-server`` is
not installed; CI installs it (.ci/run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from graphrec.settings import OnlineStoreKind, Settings
from graphrec.testing import redis_server_binary, running_redis
from tests.support.datasets import synthetic_dataset, tiny_dataset
from training.data.dataset import write_dataset

if TYPE_CHECKING:
    from tests.support.serving import PublishedVersion
    from training.models.base import TrainingData

REAL_DATA = Settings().data_dir
ONLINE_STORES = [OnlineStoreKind.sqlite, pytest.param(OnlineStoreKind.redis, marks=pytest.mark.redis)]


@pytest.fixture(scope="session", autouse=True)
def registered_models() -> None:
    """Every model module imported, so a test may look a model up in ``MODELS`` by name whichever test runs first."""
    from training.models.base import load_models

    load_models()


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    """A valid dataset folder in graphrec's format."""
    folder = tmp_path / "tiny"
    write_dataset(tiny_dataset(), folder)
    return folder


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The shared real Last.FM data; tests using it are skipped where it is absent."""
    if not (REAL_DATA / "lastfm-kg" / "ratings_final.txt").exists():
        pytest.skip(f"real Last.FM data not found under {REAL_DATA}")
    return REAL_DATA


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    """Tiny models run far faster on one thread (multi-threaded small ops stall on a busy CPU)."""
    import torch  # here, not at the top: collecting tests that never train should not pay torch's import

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def training_data() -> TrainingData:
    """The default synthetic dataset (40 users, 30 items) split and graphed for training."""
    from training.trainer import prepare_data  # imports torch and DGL: only for the tests that ask

    return prepare_data(synthetic_dataset(), seed=0)


@pytest.fixture
def settings_for(tmp_path: Path) -> Callable[..., Settings]:
    """Build Settings whose work dir is a fresh temporary folder."""

    def make(**overrides: object) -> Settings:
        return Settings(work_dir=tmp_path / "work", **overrides)

    return make


@pytest.fixture(scope="session")
def shared_mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow database for the session: Feast's MLflow integration creates it on first use, which is slow."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def store_settings(settings_for: Callable[..., Settings], shared_mlflow_uri: str) -> Callable[..., Settings]:
    """Build Settings with a fresh work dir and the session's MLflow database."""

    def make(**overrides: object) -> Settings:
        return settings_for(mlflow_tracking_uri=shared_mlflow_uri, **overrides)

    return make


@pytest.fixture
def redis_url() -> Iterator[str]:
    """``host:port`` of a fresh, empty redis-server, stopped after the test."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server); Redis online-store tests skipped")
    with running_redis() as url:
        yield url


@pytest.fixture(params=ONLINE_STORES, ids=lambda kind: kind.value)
def online_store(request: pytest.FixtureRequest) -> dict[str, object]:
    """Settings overrides selecting each online store in turn: SQLite, then Redis on a fresh server."""
    if request.param is OnlineStoreKind.sqlite:
        return {"online_store": OnlineStoreKind.sqlite}
    return {"online_store": OnlineStoreKind.redis, "redis_url": request.getfixturevalue("redis_url")}


@pytest.fixture(scope="module")
def serving_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, PublishedVersion, PublishedVersion]:
    """Settings on a work dir of the module's own (its own MLflow database and online store) with two published dot
    versions (20 users, 30 items): the first holds @champion, the second no alias."""
    from serving.pyfunc_model import ITEM_ID  # these import MLflow and Feast: only for the tests that ask
    from tests.support.serving import dot_tables, popularity_table, publish_dot_version

    settings = Settings(work_dir=tmp_path_factory.mktemp("serving-world") / "work")
    users, items = dot_tables(20, 30, 4, seed=0)
    first = publish_dot_version(settings, users, items, popularity_table(items[ITEM_ID].to_numpy(), seed=0))
    second = publish_dot_version(settings, *dot_tables(20, 30, 4, seed=1), alias=None)
    return settings, first, second
