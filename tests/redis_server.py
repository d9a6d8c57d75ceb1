"""Pytest fixtures: a redis-server per test on a free loopback port, and the online store kinds to run tests against.

Tests asking for ``redis_url`` (or ``online_store`` = redis) are skipped, with the reason, when ``redis-server`` is
not installed; CI installs it (.ci/run).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from graphrec.settings import OnlineStoreKind
from graphrec.testing import redis_server_binary, running_redis

ONLINE_STORES = [OnlineStoreKind.sqlite, pytest.param(OnlineStoreKind.redis, marks=pytest.mark.redis)]


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
