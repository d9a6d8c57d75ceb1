"""Request log under load (marker ``system``): the app under uvicorn in a subprocess, traffic with feedback from this
process over loopback. (a) N requests + feedback from 16 threads: 0 failed, exactly N request rows and every feedback
row. (b) the log's database locked by another writer (a stalled writer): every response still 200, the shed rows
counted in /metrics, and once unlocked the rows written plus the rows shed are exactly the requests served."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import httpx
import numpy as np
import pytest

from serving.pyfunc_model import ITEM_ID
from serving.requestlog import SqlSink
from tests.support.serving import dot_tables, popularity_table, publish_dot_version
from tests.system.harness import DIM, ITEMS, USERS, running_server, system_settings
from training.simulation import ClickTruth, simulate_traffic

REQUESTS = 5000


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work dir with one published champion on SQLite."""
    work_dir = tmp_path_factory.mktemp("request-log-load") / "work"
    users, items = dot_tables(USERS, ITEMS, DIM, seed=0)
    popularity = popularity_table(items[ITEM_ID].to_numpy(), seed=0)
    publish_dot_version(system_settings(work_dir), users, items, popularity)
    return work_dir


def shed_requests(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    found = re.search(r'^graphrec_request_log_shed_total\{kind="request",reason="queue_full"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_every_request_and_feedback_logged_under_load(world: Path) -> None:
    rng = np.random.default_rng(0)
    keys = np.unique(rng.integers(0, USERS * ITEMS, USERS * 20))
    truth = ClickTruth(USERS, ITEMS, keys, hit=0.5, miss=0.05)
    with running_server(world) as server:
        report = simulate_traffic(server.url, truth, REQUESTS, candidates=100, shown=10, concurrency=16, seed=1)
    print("load:", report.requests, "requests,", report.feedback_events, "feedback events, failed", report.failed)
    assert report.failed == 0 and report.requests == REQUESTS
    sink = SqlSink(system_settings(world).request_log_uri)
    logged = sink.requests()
    assert len(logged) == REQUESTS and logged["request_id"].is_unique
    assert len(sink.feedback()) == report.feedback_events


def test_locked_log_sheds_rows_never_responses(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHREC_SERVING_REQUEST_LOG_QUEUE", "20")
    database = Path(SqlSink(system_settings(world).request_log_uri).engine.url.database)
    before = len(SqlSink(system_settings(world).request_log_uri).requests())
    n = 300
    with running_server(world) as server:
        lock = sqlite3.connect(database, timeout=30)
        lock.execute("BEGIN EXCLUSIVE")  # the writer's next transaction waits: it stalls with a full batch
        try:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                statuses = [
                    client.post("/v1/predict", json={"user_id": u % USERS, "item_ids": [1, 2, 3]}).status_code
                    for u in range(n)
                ]
            shed = shed_requests(server.url)
        finally:
            lock.rollback()
            lock.close()
    print("stalled writer:", n, "requests,", shed, "log rows shed")
    assert statuses == [200] * n
    assert shed >= n - 2 * 20  # at most the queue and the batch the stalled writer holds (up to the queue) taken
    assert shed > 0
    assert len(SqlSink(system_settings(world).request_log_uri).requests()) - before == n - shed
