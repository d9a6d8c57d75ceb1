"""Every private name of Feast and redis-py that graphrec relies on, in one place, behind a version check.

Feast 0.67 has no public API for five things graphrec needs: the storage layout of its online stores (to write
Feast's exact bytes in bulk, see featurestore/engine.py), the Redis client it builds from a connection string
(to reuse its parsing), the online store a FeatureStore holds (to make its Redis client fail fast while serving),
the compute engine it materializes with (to attach a progress display and check which engine Feast resolved),
and redis-py has no bulk reply reader (so the fast writer reads a connection's socket with hiredis). Each use is a
small function here; no other module names a private attribute of either library (tests/test_architecture.py
checks it). Importing this module fails at once, with the versions involved, on a Feast or redis-py it was not
written for: the layouts below are then unknown, and writing them blindly would corrupt an online store.
"""

from __future__ import annotations

import socket
from importlib.metadata import version
from pathlib import Path

from feast import FeatureStore, FeatureView, RepoConfig
from feast.infra.compute_engines.base import ComputeEngine
from feast.infra.online_stores.helpers import _mmh3, compute_versioned_name
from feast.infra.online_stores.online_store import OnlineStore
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig
from redis import Redis
from redis.backoff import NoBackoff
from redis.connection import Connection
from redis.retry import Retry

SUPPORTED = {"feast": ("0.67.",), "redis": ("7.",)}


class UnsupportedVersion(ImportError):
    """An installed Feast or redis-py is not a version these internals were written for."""


def check_versions(installed: dict[str, str] | None = None) -> None:
    """Raise :class:`UnsupportedVersion` unless every library in ``SUPPORTED`` has a supported version."""
    installed = installed or {name: version(name) for name in SUPPORTED}
    wrong = {
        name: found for name, found in installed.items() if name in SUPPORTED and not found.startswith(SUPPORTED[name])
    }
    if wrong:
        found = ", ".join(f"{name} {value}" for name, value in wrong.items())
        wanted = ", ".join(f"{name} {'/'.join(p + 'x' for p in prefixes)}" for name, prefixes in SUPPORTED.items())
        raise UnsupportedVersion(
            f"featurestore/internals.py was written for {wanted}, found {found}: check the online-store layouts "
            "and private names used there against the new version, then update SUPPORTED"
        )


check_versions()  # the one import-time check: a wrong version must fail before any byte is written


# --- SQLite online store -------------------------------------------------------------------------------------------


def sqlite_db_path(config: RepoConfig) -> Path:
    """The SQLite file of a Feast config's online store, resolved as ``SqliteOnlineStore._get_db_path`` does: a
    relative path is relative to the repo path."""
    path = Path(config.online_store.path)
    if config.repo_path and not path.is_absolute():
        return Path(config.repo_path) / path
    return path


def quote_sqlite_identifier(identifier: str) -> str:
    """A SQLite identifier in double quotes, embedded quotes doubled (standard SQL; what Feast's ``_quote_id`` does)."""
    return '"' + identifier.replace('"', '""') + '"'


# --- Redis online store --------------------------------------------------------------------------------------------


def redis_view_name(view: FeatureView, config: RepoConfig) -> str:
    """The view name Feast's Redis store uses in its hash fields (versioned when online versioning is on)."""
    return compute_versioned_name(view, config.registry.enable_online_feature_view_versioning)


def redis_feature_field(view_name: str, feature: str) -> bytes:
    """The hash field of one feature in Feast's Redis layout: murmur3 of ``"<view>:<feature>"``."""
    return _mmh3(f"{view_name}:{feature}")


def redis_client(store_config: RedisOnlineStoreConfig) -> Redis:
    """A Redis client built by Feast's own connection-string parsing (host:port plus ``,key=value`` options)."""
    return RedisOnlineStore()._get_client(store_config)


def connection_socket(connection: Connection) -> socket.socket:
    """The connected socket of a redis-py connection (redis-py has no bulk reply reader; this is its own socket)."""
    sock = connection._sock
    if sock is None:
        raise ConnectionError("the Redis connection is not connected")
    return sock


# --- the online store of a FeatureStore ----------------------------------------------------------------------------


def online_store_of(store: FeatureStore) -> OnlineStore:
    """The OnlineStore object a FeatureStore reads through (its provider's)."""
    return store._get_provider().online_store


def batch_engine_of(store: FeatureStore) -> ComputeEngine:
    """The compute engine a FeatureStore materializes with: its provider's, built from ``batch_engine`` in its
    config (graphrec's materialize attaches its progress display to it; tests check which engine Feast resolved)."""
    return store._get_provider().batch_engine


def fail_fast_redis(store: FeatureStore) -> None:
    """Make a FeatureStore's Redis client fail fast: redis-py 7 retries a failed command 3 times with 1-10 s
    exponential backoff (about 10 s per read while Redis is down) and Feast 0.67 has no setting for it, so its
    client gets one immediate retry instead. No-op for other online stores."""
    online_store = online_store_of(store)
    if isinstance(online_store, RedisOnlineStore):
        online_store._get_client(store.config.online_store).set_retry(Retry(NoBackoff(), 1))
