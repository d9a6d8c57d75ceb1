"""Bulk writes into Feast's Redis online store, hash for hash what ``RedisOnlineStore.online_write_batch`` writes.

Per entity one hash, key ``serialized entity key + project``; per view the field ``_ts:<view>`` holds the serialized
protobuf Timestamp of the row's event time and each feature the field ``mmh3("<view>:<feature>")`` its serialized
ValueProto. As in Feast (without ``skip_dedup``), a row is skipped when the stored ``_ts:<view>`` is the same instant
or later, and ``key_ttl_seconds`` sets an expiry. Per batch, all HGETs of the stored timestamps, then all HSETs, are
encoded as RESP in bulk, go out pipelined in one write each, and their replies are parsed in bulk by hiredis. Every
HSET replaces one view's fields of one entity at once, so an interrupted run leaves each entity either old or new,
and a re-run completes it (already-new entities are skipped, as Feast would).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from itertools import repeat
from typing import Any

import hiredis
import numpy as np
import redis
from feast import FeatureView, RepoConfig
from feast.infra.online_stores.redis import RedisType
from google.protobuf.timestamp_pb2 import Timestamp
from redis.connection import Connection

from featurestore.encoding import OnlineBatch
from featurestore.internals import connection_socket, redis_client, redis_feature_field, redis_view_name

NANOS_PER_MICRO = 1000
RECV_BYTES = 1 << 20


def _timestamp_bytes(micros: int) -> bytes:
    stamp = Timestamp()
    seconds, micro = divmod(micros, 1_000_000)
    stamp.FromDatetime(datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=micro))
    return stamp.SerializeToString()


def _stored_nanos(serialized: bytes | None, cache: dict[bytes, int]) -> int:
    """Nanoseconds of a stored ``_ts`` field (0 when absent), parsing each distinct value once."""
    if not serialized:
        return 0
    if serialized not in cache:
        stamp = Timestamp()
        stamp.ParseFromString(serialized)
        cache[serialized] = stamp.seconds * 1_000_000_000 + stamp.nanos
    return cache[serialized]


def _bulk(value: bytes) -> bytes:
    """A RESP bulk string."""
    return b"$%d\r\n%b\r\n" % (len(value), value)


def _bulks(values: Iterable[bytes]) -> list[bytes]:
    """RESP bulk strings of many values (inlined: this runs once per stored value)."""
    return [b"$%d\r\n%b\r\n" % (len(value), value) for value in values]


def _commands(name: bytes, arguments: list[Iterable[bytes]]) -> bytes:
    """Pipelined RESP commands ``name arg1 arg2 ...``, one per row of ``arguments`` (columns of bulk strings)."""
    header = b"*%d\r\n" % (len(arguments) + 1) + _bulk(name)
    return b"".join(map(b"".join, zip(repeat(header), *arguments)))


def _exchange(connection: Connection, payload: bytes, count: int) -> list[Any]:
    """Send ``count`` pipelined commands in one write, then read all their replies with a hiredis reader (no
    per-reply Python machinery: this is what makes bulk writes fast); raise on an error reply."""
    connection.send_packed_command([payload], check_health=False)
    try:
        sock = connection_socket(connection)
    except ConnectionError:
        raise redis.ConnectionError("the Redis connection closed during a bulk write") from None
    reader = hiredis.Reader()
    replies: list[Any] = []
    while len(replies) < count:
        data = sock.recv(RECV_BYTES)
        if not data:
            raise redis.ConnectionError("Redis closed the connection during a bulk write")
        reader.feed(data)
        while (reply := reader.gets()) is not False:
            replies.append(reply)
    errors = [reply for reply in replies if isinstance(reply, hiredis.ReplyError)]
    if errors:
        raise redis.ResponseError(f"{len(errors)} command(s) failed during a bulk write, first: {errors[0]}")
    return replies


class RedisWriter:
    """Writes OnlineBatches into the Redis online store of a Feast config."""

    def __init__(self, config: RepoConfig):
        self.config = config
        self.store_config = config.online_store
        if self.store_config.redis_type == RedisType.redis_cluster:
            raise ValueError(
                "graphrec's compute engine pipelines over one connection: Redis Cluster is not supported "
                "(configure batch_engine: local in feature_store.yaml to use Feast's own engine)"
            )
        self.client = redis_client(self.store_config)  # Feast's own connection-string handling
        self.connection = self.client.connection_pool.get_connection()
        self.project = config.project.encode("utf-8")

    def prepare(self, view: FeatureView) -> None:
        """Nothing to create: Redis hashes appear on first write."""

    def write(self, view: FeatureView, batch: OnlineBatch) -> None:
        """Write every row of ``batch`` whose event time is later than the one stored for its entity and view."""
        view_name = redis_view_name(view, self.config)
        ts_field = f"_ts:{view_name}".encode()
        key_bulks = _bulks(key + self.project for key in batch.keys)
        stored = _exchange(self.connection, _commands(b"HGET", [key_bulks, repeat(_bulk(ts_field))]), len(key_bulks))
        cache: dict[bytes, int] = {}
        latest = np.array([_stored_nanos(value, cache) for value in stored], dtype=np.int64)
        newer = (latest == 0) | (batch.event_micros * NANOS_PER_MICRO > latest)
        chosen = np.flatnonzero(newer).tolist()
        if not chosen:
            return
        pick = (lambda column: column) if newer.all() else (lambda column: [column[i] for i in chosen])
        distinct, inverse = np.unique(batch.event_micros, return_inverse=True)
        stamps = [_bulk(_timestamp_bytes(int(m))) for m in distinct.tolist()]
        keys = pick(key_bulks)
        arguments = [keys, repeat(_bulk(ts_field)), [stamps[i] for i in pick(inverse.tolist())]]
        for feature in batch.spec.features:
            field = _bulk(redis_feature_field(view_name, feature.name))
            arguments += [repeat(field), _bulks(pick(batch.values[feature.name]))]
        payload, count = _commands(b"HSET", arguments), len(keys)
        ttl = self.store_config.key_ttl_seconds
        if ttl:
            payload, count = payload + _commands(b"EXPIRE", [keys, repeat(_bulk(str(ttl).encode()))]), 2 * count
        _exchange(self.connection, payload, count)

    def close(self) -> None:
        """Return the connection and close the client."""
        self.client.connection_pool.release(self.connection)
        self.client.close()
