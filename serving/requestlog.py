"""The request log: every served request and the feedback on it, written without blocking the request path.

The scoring routes hand each result to :meth:`RequestLog.served`: one ``put_nowait`` onto a bounded queue and an entry
in the in-memory index of recent requests that ``POST /v1/feedback`` is validated against. When the queue is full the
row is shed and counted (``graphrec_request_log_shed`` in /metrics); a response is never delayed or failed by logging.
Feedback takes the same queue but is refused with a 503 when it is full: the client is told and can retry. A request
id not in memory (served before a restart, or by another worker or replica sharing the log) is read back from the
sink, re-read twice within 0.2 s while the other writer may still hold its row in a batch.

One writer thread drains the queue in batches into two append-only tables (:class:`SqlSink`): ``served_requests``
(id, time, route, user, arm and how it was assigned, model name and version, items and scores in served order,
fallback, the item-feature watermark, and for a share of requests the served user row and the top items' rows) and
``feedback`` (request id, item, impression or click, time; one row per event, duplicates refused). The sink is any
SQLAlchemy URL: SQLite (``requests.db`` under the work dir) by default, a database the replicas share when scaled out.
Converting a result to its row (lists, the feature sample) happens on the writer thread, not in the request.
"""

from __future__ import annotations

import errno
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Full, Queue
from typing import Any, Protocol

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from serving.metrics import ServingMetrics
from serving.ranking import Ranked

log = logging.getLogger(__name__)

IMPRESSION, CLICK = "impression", "click"
REQUEST, FEEDBACK = "request", "feedback"
SPLIT, HEADER = "split", "header"  # how the arm was chosen: the challenger share's user hash, or the variant header
BATCH = 500  # rows per write transaction
LINGER_S = 0.05  # the writer waits up to this for more rows: one transaction per batch, not one per request (the
# per-request commit cost a sequential client 0.8 ms per request at 100 candidates; BENCHMARKS.md, issue 17)
SAMPLED_ITEMS = 3  # model-scored items, best first, whose served feature rows a sampled request logs
RETRY_S = 0.5
LOOKUP_RETRIES_S = (0.05, 0.15)  # pauses before re-reading the log for a request id not held in memory


class PackedArray(TypeDecorator):
    """A 1-D array stored as its raw little-endian bytes, read back as a list. The writer thread packs 1,000 ids or
    scores with one C call instead of JSON-encoding each number while holding the GIL the request threads wait for
    (which doubled the p99 of a logged 1,000-candidate request; BENCHMARKS.md, issue 17), in half the bytes."""

    impl = LargeBinary
    cache_ok = True

    def __init__(self, dtype: str):
        super().__init__()
        self.dtype = np.dtype(dtype)

    def process_bind_param(self, value: Any, dialect: Any) -> bytes | None:
        """The values' bytes, in ``dtype``."""
        return None if value is None else np.ascontiguousarray(value, dtype=self.dtype).tobytes()

    def process_result_value(self, value: Any, dialect: Any) -> list | None:
        """The stored values as a list of Python numbers."""
        return None if value is None else np.frombuffer(value, dtype=self.dtype).tolist()


metadata = MetaData()
served_requests = Table(
    "served_requests",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("served_at", Float, nullable=False, index=True),  # unix seconds
    Column("route", String(16), nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("arm", String(16), nullable=False),  # champion | challenger
    Column("assignment", String(8), nullable=False),  # split | header
    Column("model_name", String(256), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("item_ids", PackedArray("<i8"), nullable=False),  # served order, best first
    Column("scores", PackedArray("<f4"), nullable=False),
    Column("fallback", String(32)),
    Column("feature_watermark", Float),  # unix seconds of the item view's materialization the binding read
    Column("user_view", String(256), nullable=False),
    Column("item_view", String(256), nullable=False),
    Column("features", JSON),  # sampled requests: {"user": {feature: value}, "items": {item_id: {feature: value}}}
)
feedback_events = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("item_id", BigInteger, nullable=False),
    Column("event", String(16), nullable=False),
    Column("received_at", Float, nullable=False),
    UniqueConstraint("request_id", "item_id", "event", name="one_event_per_item"),
)


@dataclass(frozen=True)
class LoggedRequest:
    """What feedback validation needs of a request read back from the sink."""

    item_ids: list[int]
    events: set[tuple[int, str]]


class Sink(Protocol):
    """Where the writer puts rows and where feedback validation looks up requests no longer held in memory."""

    def write(self, requests: Sequence[dict[str, Any]], feedback: Sequence[dict[str, Any]]) -> None:
        """Append the rows (one transaction); duplicates of stored feedback events are skipped."""

    def find(self, request_id: str) -> LoggedRequest | None:
        """The stored request and its stored feedback events (None: no such request)."""


def sql_engine(url: str) -> Engine:
    """An engine on ``url``; SQLite gets its folder created, WAL (readers never block the writer) and a busy
    timeout, so the report can read while the service writes."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, json_serializer=_json_text)
    if parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, json_serializer=_json_text)

    @event.listens_for(engine, "connect")
    def _wal(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    return engine


class SqlSink:
    """The two append-only tables in a SQLAlchemy database (created when missing, unless ``create`` is false: a
    reader of a SQLite log that does not exist gets FileNotFoundError instead of a new empty file)."""

    def __init__(self, url: str, create: bool = True):
        parsed = make_url(url)
        if not create and parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
            raise FileNotFoundError(
                errno.ENOENT, "no request log (is GRAPHREC_SERVING_REQUEST_LOG on?)", parsed.database
            )
        self.engine = sql_engine(url)
        if create:
            metadata.create_all(self.engine)

    def _insert_feedback(self) -> Any:
        """INSERT that skips a stored duplicate (two replicas may both accept one) where the dialect can say so."""
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            return sqlite.insert(feedback_events).on_conflict_do_nothing()
        if dialect == "postgresql":
            return postgresql.insert(feedback_events).on_conflict_do_nothing()
        return insert(feedback_events)

    def write(self, requests: Sequence[dict[str, Any]], feedback: Sequence[dict[str, Any]]) -> None:
        """Append the rows in one transaction."""
        with self.engine.begin() as connection:
            if requests:
                connection.execute(insert(served_requests), list(requests))
            if feedback:
                connection.execute(self._insert_feedback(), list(feedback))

    def find(self, request_id: str) -> LoggedRequest | None:
        """The stored request's items and its stored feedback events."""
        with self.engine.connect() as connection:
            items = connection.execute(
                select(served_requests.c.item_ids).where(served_requests.c.request_id == request_id)
            ).scalar_one_or_none()
            if items is None:
                return None
            rows = connection.execute(
                select(feedback_events.c.item_id, feedback_events.c.event).where(
                    feedback_events.c.request_id == request_id
                )
            )
            return LoggedRequest(list(items), {(int(i), str(e)) for i, e in rows})

    def requests(self, since: float | None = None) -> pd.DataFrame:
        """Logged requests served at or after ``since`` (unix seconds; None: all), oldest first."""
        query = select(served_requests).order_by(served_requests.c.served_at)
        if since is not None:
            query = query.where(served_requests.c.served_at >= since)
        with self.engine.connect() as connection:
            return pd.DataFrame(connection.execute(query).mappings().all(), columns=served_requests.c.keys())

    def prune(self, before: float, dry_run: bool = False) -> tuple[int, int]:
        """Delete the requests served before ``before`` (unix seconds) and all their feedback, in one transaction;
        return (requests, feedback events) deleted, or that would be with ``dry_run``. Retention: the log only
        grows otherwise, and a request's feedback is worthless without it."""
        is_old = served_requests.c.served_at < before
        old = select(served_requests.c.request_id).where(is_old)
        of_old = feedback_events.c.request_id.in_(old.scalar_subquery())
        with self.engine.begin() as connection:
            requests = connection.execute(select(func.count()).select_from(old.subquery())).scalar_one()
            events = connection.execute(select(func.count()).where(of_old)).scalar_one()
            if not dry_run:
                connection.execute(delete(feedback_events).where(of_old))
                connection.execute(delete(served_requests).where(is_old))
        return int(requests), int(events)

    def feedback(self, since: float | None = None) -> pd.DataFrame:
        """Feedback events received at or after ``since`` (unix seconds; None: all)."""
        query = select(feedback_events).order_by(feedback_events.c.id)
        if since is not None:
            query = query.where(feedback_events.c.received_at >= since)
        with self.engine.connect() as connection:
            return pd.DataFrame(connection.execute(query).mappings().all(), columns=feedback_events.c.keys())


@dataclass(frozen=True)
class Served:
    """A served result awaiting the writer (converted to its row there, off the request path)."""

    request_id: str
    served_at: float
    route: str
    user_id: int
    assignment: str
    result: Ranked
    with_features: bool


def _exact(value: np.ndarray) -> np.ndarray:
    """A served feature value to log: floats widened to float64 so their JSON text is the float32 value exactly (the
    skew check compares it with the offline value at zero difference); ids stay int64."""
    return value.astype(np.float64) if np.issubdtype(value.dtype, np.floating) else value


def _json_text(value: Any) -> str:
    """JSON text of a logged value, numpy arrays included: orjson encodes a KCAN feature sample (about 4,000 floats)
    in C, where json needs them as Python floats first and holds the GIL the request threads wait for (issue 17)."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def feature_sample(result: Ranked) -> dict[str, Any] | None:
    """The served user row and the feature rows of the top model-scored items (None without a user row)."""
    if result.user_row is None:
        return None
    user = {name: _exact(values[0]) for name, values in result.user_row.items()}
    top = result.item_ids[result.by_model][:SAMPLED_ITEMS]
    items = result.binding.items
    index, found = items.locate(top)
    rows = items.gather(index[found])
    sampled = {
        str(item): {name: _exact(column[position]) for name, column in rows.items()}
        for position, item in enumerate(top[found].tolist())
    }
    return {"user": user, "items": sampled}


def request_row(served: Served) -> dict[str, Any]:
    """The ``served_requests`` row of a served result."""
    result, binding = served.result, served.result.binding
    watermark = binding.item_watermark
    return {
        "request_id": served.request_id,
        "served_at": served.served_at,
        "route": served.route,
        "user_id": served.user_id,
        "arm": binding.alias,
        "assignment": served.assignment,
        "model_name": binding.name,
        "model_version": binding.version,
        "item_ids": result.item_ids,
        "scores": result.scores,
        "fallback": result.fallback,
        "feature_watermark": watermark.timestamp() if watermark is not None else None,
        "user_view": binding.user_view,
        "item_view": binding.item_view,
        "features": feature_sample(result) if served.with_features else None,
    }


class FeedbackRejected(ValueError):
    """Feedback that cannot be recorded: ``status`` is the HTTP status, the message names what is wrong."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status


@dataclass
class _Entry:
    item_ids: np.ndarray | list[int]
    events: set[tuple[int, str]] = field(default_factory=set)
    items: frozenset[int] | None = None  # built on the first feedback, not when serving

    def item_set(self) -> frozenset[int]:
        if self.items is None:
            ids = self.item_ids.tolist() if isinstance(self.item_ids, np.ndarray) else self.item_ids
            self.items = frozenset(ids)
        return self.items


class RequestLog:
    """The bounded queue, the writer thread and the index of recent requests (see the module docstring)."""

    def __init__(
        self,
        sink: Sink,
        metrics: ServingMetrics,
        *,
        capacity: int,
        feature_share: float,
        recent: int,
    ):
        self.sink, self.metrics = sink, metrics
        self.feature_share, self.recent_capacity = feature_share, recent
        self._queue: Queue[tuple[str, object] | None] = Queue(maxsize=capacity)
        self._batch = min(BATCH, capacity)  # rows held by the writer stay within the queue's bound
        self._recent: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()  # the recent index and feedback's check-then-enqueue
        self._pending = 0  # rows queued or being written
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        metrics.watch_queue(self._queue.qsize)

    def start(self) -> RequestLog:
        """Start the writer thread (a daemon; :meth:`close` drains the queue first)."""
        self._thread = threading.Thread(target=self._write_loop, name="graphrec-request-log", daemon=True)
        self._thread.start()
        return self

    def _put(self, kind: str, payload: object, rows: int) -> bool:
        with self._idle:
            try:
                self._queue.put_nowait((kind, payload))
            except Full:
                return False
            self._pending += rows
        return True

    def served(self, request_id: str, route: str, user_id: int, forced: bool, result: Ranked) -> None:
        """Queue the served result's row and index its items for feedback; shed (and count) when the queue is
        full. Never raises and never waits."""
        with_features = self.feature_share > 0 and random.random() < self.feature_share
        record = Served(request_id, time.time(), route, user_id, HEADER if forced else SPLIT, result, with_features)
        if not self._put(REQUEST, record, 1):
            self.metrics.shed(REQUEST, "queue_full")
            return
        with self._lock:
            self._recent[request_id] = _Entry(result.item_ids)
            if len(self._recent) > self.recent_capacity:
                self._recent.popitem(last=False)

    def _entry(self, request_id: str) -> _Entry:
        """The request's entry: in memory, else read back from the sink; FeedbackRejected(404) when unknown."""
        with self._lock:
            entry = self._recent.get(request_id)
        if entry is not None:
            return entry
        stored = self.sink.find(request_id)
        for pause in LOOKUP_RETRIES_S:  # served by another worker or replica, its row may be a batch away
            if stored is not None:
                break
            time.sleep(pause)
            stored = self.sink.find(request_id)
        if stored is None:
            raise FeedbackRejected(
                404, f"unknown request_id {request_id!r}: no request with this id was logged (or its row was shed)"
            )
        with self._lock:
            return self._recent.setdefault(request_id, _Entry(stored.item_ids, stored.events))

    def feedback(self, request_id: str, events: Iterable[tuple[int, str]]) -> int:
        """Validate and queue ``(item_id, event)`` pairs of one request, all or none: FeedbackRejected 404 for an
        unknown request, 422 for an item the response did not contain, 409 for an event already recorded (or
        repeated in the call), 503 when the queue is full. Returns the number queued."""
        entry = self._entry(request_id)
        now = time.time()
        with self._lock:
            items, fresh = entry.item_set(), set()
            for item_id, kind in events:
                if item_id not in items:
                    raise FeedbackRejected(422, f"item {item_id} was not in the response to request {request_id!r}")
                if (item_id, kind) in entry.events or (item_id, kind) in fresh:
                    raise FeedbackRejected(409, f"duplicate {kind} for item {item_id} of request {request_id!r}")
                fresh.add((item_id, kind))
            rows = [
                {"request_id": request_id, "item_id": item, "event": kind, "received_at": now} for item, kind in fresh
            ]
            if not self._put(FEEDBACK, rows, len(rows)):
                self.metrics.shed(FEEDBACK, "queue_full")
                raise FeedbackRejected(503, "the request log is behind (its queue is full): retry the feedback later")
            entry.events |= fresh
        return len(rows)

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + LINGER_S
            while len(batch) < self._batch:
                try:
                    item = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
                except Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            self._write(batch)

    def _write(self, batch: list[tuple[str, object]]) -> None:
        """Write one batch (retried once); a batch that still fails is counted as shed, its cause logged."""
        requests = [request_row(payload) for kind, payload in batch if kind == REQUEST]  # type: ignore[arg-type]
        feedback = [row for kind, payload in batch if kind == FEEDBACK for row in payload]  # type: ignore[attr-defined]
        try:
            for attempt in range(2):
                try:
                    self.sink.write(requests, feedback)
                    self.metrics.logged(REQUEST, len(requests))
                    self.metrics.logged(FEEDBACK, len(feedback))
                    break
                except Exception as error:  # noqa: BLE001  any sink failure: retry once, then shed and count
                    if attempt == 1:
                        log.error("request log write failed, %d rows shed: %s", len(requests) + len(feedback), error)
                        self.metrics.shed(REQUEST, "write_error", len(requests))
                        self.metrics.shed(FEEDBACK, "write_error", len(feedback))
                    else:
                        time.sleep(RETRY_S)
        finally:
            with self._idle:
                self._pending -= len(requests) + len(feedback)
                self._idle.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until every queued row is written (or shed); False when ``timeout`` seconds pass first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Drain the queue (up to ``timeout`` seconds) and stop the writer."""
        if self._thread is None:
            return
        self.flush(timeout)
        try:
            self._queue.put(None, timeout=1.0)
        except Full:
            log.warning("request log writer did not drain in %.0f s; %d rows not written", timeout, self._pending)
            return
        self._thread.join(timeout=timeout)
        self._thread = None
