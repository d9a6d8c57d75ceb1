"""Reliability tier (marker ``system``): the app under uvicorn, load from a second process over loopback.

(a) 60 s saturation: no errors, p99 recorded. (b) promotion during load: no failed request, the new version served
within two poll intervals (plus its load time). (c) Redis stopped during load: 503 + Retry-After, then recovery
without a restart. (d) schemathesis against /openapi.json: no server errors. (e) the online SQLite file deleted
during load, then put back: 503 + Retry-After and /readyz 503 meanwhile, recovery without a restart. (f) @champion
moved to a tampered version during load: every request still 200 from the previous version, nothing planted runs.
(g) hostile raw bodies over real HTTP (uvicorn, one keep-alive connection): never a 500, the connection survives.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from graphrec.testing import RedisProcess, redis_server_binary
from serving.contract import CHAMPION
from tests.support.serving import dot_tables, popularity_table, publish_dot_version
from tests.support.tampering import plant, version_folder
from tests.system.harness import DIM, ITEMS, USERS, load, read_records, running_server, summary, system_settings

POLL_S = 2.0


def publish(work_dir: Path, seed: int, redis_url: str | None = None, alias: str | None = CHAMPION) -> str:
    """Publish one dot-model version into ``work_dir``; its version number."""
    users, items = dot_tables(USERS, ITEMS, DIM, seed=seed)
    settings = system_settings(work_dir, redis_url, POLL_S)
    popularity = popularity_table(items["item_id"].to_numpy(), seed)
    return publish_dot_version(settings, users, items, popularity, alias).version


@pytest.fixture(scope="module")
def sqlite_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work dir with one published champion on SQLite."""
    work_dir = tmp_path_factory.mktemp("system") / "work"
    publish(work_dir, seed=0)
    return work_dir


def test_saturation_for_60_seconds(sqlite_world: Path, tmp_path: Path, record_property: pytest.RecordProperty) -> None:
    out = tmp_path / "load.json"
    with running_server(sqlite_world, poll_s=POLL_S) as server, load(server.url, 60, 8, out):
        pass
    result = summary(read_records(out))
    record_property("saturation", result)
    print("saturation:", result)
    assert result["statuses"] == {"200": result["requests"]}


def test_promotion_during_load(tmp_path: Path, record_property: pytest.RecordProperty) -> None:
    work_dir = tmp_path / "work"
    first = publish(work_dir, seed=1)
    second = publish(work_dir, seed=2, alias=None)
    out = tmp_path / "load.json"
    with running_server(work_dir, poll_s=POLL_S) as server, load(server.url, 30, 4, out):
        time.sleep(10)
        moved_at = time.time()
        MlflowClient().set_registered_model_alias(system_settings(work_dir).registered_model_name, CHAMPION, second)
    records = read_records(out)
    result = summary(records)
    first_new = min(r["t"] + r["ms"] / 1e3 for r in records if r.get("version") == second)
    delay = first_new - moved_at
    record_property("promotion", result | {"new_version_after_s": delay})
    print("promotion:", result, f"new version served {delay:.2f} s after the alias moved")
    assert result["statuses"] == {"200": result["requests"]}
    assert {r["version"] for r in records if r["t"] < moved_at} == {first}
    assert all(r["version"] == second for r in records if r["t"] > first_new + 0.5)
    assert delay <= 2 * POLL_S + 1.0  # two poll intervals, plus the model and item-table load


def test_redis_outage_during_load(tmp_path: Path, record_property: pytest.RecordProperty) -> None:
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed")
    redis_server = RedisProcess(tmp_path / "redis")
    redis_server.start()
    try:
        work_dir = tmp_path / "work"
        publish(work_dir, seed=3, redis_url=redis_server.url)
        out = tmp_path / "load.json"
        with running_server(work_dir, redis_server.url, POLL_S) as server, load(server.url, 30, 4, out):
            time.sleep(8)
            stopped_at = time.time()
            redis_server.stop()
            time.sleep(8)
            redis_server.start()
            restarted_at = time.time()
        records = read_records(out)
    finally:
        redis_server.stop()
    result = summary(records)
    unavailable = [r for r in records if r["status"] == 503]
    recovered = min(r["t"] for r in records if r["status"] == 200 and r["t"] > restarted_at)
    record_property("redis_outage", result | {"recovered_after_s": recovered - restarted_at})
    print("redis outage:", result, f"first 200 {recovered - restarted_at:.2f} s after Redis restarted")
    assert set(result["statuses"]) == {"200", "503"}
    assert unavailable and all(r["retry_after"] for r in unavailable)
    assert all(stopped_at - 1 <= r["t"] <= restarted_at + 2 for r in unavailable)
    assert recovered - restarted_at < 5


def test_schemathesis_finds_no_server_errors(sqlite_world: Path, tmp_path: Path) -> None:
    binary = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if binary is None:
        pytest.skip("schemathesis is not installed")
    with running_server(sqlite_world, poll_s=POLL_S) as server:
        command = [
            binary,
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "100",
            "--request-timeout",
            "10",
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-3000:]


def test_online_store_deleted_during_load(tmp_path: Path, record_property: pytest.RecordProperty) -> None:
    work_dir = tmp_path / "work"
    publish(work_dir, seed=4)
    online, aside = work_dir / "online.db", tmp_path / "online.db.aside"
    out = tmp_path / "load.json"
    with running_server(work_dir, poll_s=POLL_S) as server, load(server.url, 30, 4, out):
        time.sleep(8)
        removed_at = time.time()
        online.rename(aside)
        time.sleep(2)
        readiness = httpx.get(f"{server.url}/readyz", timeout=10)
        time.sleep(4)
        aside.rename(online)
        restored_at = time.time()
    records = read_records(out)
    result = summary(records)
    unavailable = [r for r in records if r["status"] == 503]
    recovered = min(r["t"] for r in records if r["status"] == 200 and r["t"] > restored_at)
    record_property("online_store_deleted", result | {"recovered_after_s": recovered - restored_at})
    print("online store deleted:", result, f"first 200 {recovered - restored_at:.2f} s after the file came back")
    assert readiness.status_code == 503 and "does not exist" in readiness.json()["detail"]
    assert set(result["statuses"]) == {"200", "503"}
    assert unavailable and all(r["retry_after"] for r in unavailable)
    assert all(removed_at - 1 <= r["t"] <= restored_at + 2 for r in unavailable)
    assert recovered - restored_at < 5


def test_tampered_champion_during_load(tmp_path: Path, record_property: pytest.RecordProperty) -> None:
    work_dir = tmp_path / "work"
    first = publish(work_dir, seed=5)
    tampered = publish(work_dir, seed=6, alias=None)
    name = system_settings(work_dir).registered_model_name
    marker = tmp_path / "payload-ran"
    plant(version_folder(name, tampered), "pickle", marker)
    out = tmp_path / "load.json"
    with running_server(work_dir, poll_s=POLL_S) as server, load(server.url, 20, 4, out):
        time.sleep(5)
        MlflowClient().set_registered_model_alias(name, CHAMPION, tampered)
        time.sleep(4 * POLL_S)
        readiness = httpx.get(f"{server.url}/readyz", timeout=10).json()
    result = summary(read_records(out))
    record_property("tampered_champion", result)
    print("tampered champion:", result, "readyz:", readiness)
    assert result["statuses"] == {"200": result["requests"]}
    assert {r["version"] for r in read_records(out)} == {first}
    assert "python_model.pkl was added" in (readiness.get("detail") or "")
    assert not marker.exists()


HOSTILE_BODIES = [
    b'{"user_id": NaN, "item_ids": [1]}',
    b'{"user_id": Infinity, "item_ids": [1]}',
    b'{"user_id": 1e400, "item_ids": [1]}',
    b'{"user_id": 1, "item_ids": [1], "note": "\\ud800"}',
    b'{"user_id": "\xff\xfe", "item_ids": [1]}',
    b"[" * 10_000 + b"]" * 10_000,
    b'{"user_id": 1, "item_ids": [1]',
    b"",
]


def test_hostile_bodies_over_real_http(sqlite_world: Path) -> None:
    with running_server(sqlite_world, poll_s=POLL_S) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        statuses = []
        for body in HOSTILE_BODIES:
            response = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
            statuses.append(response.status_code)
            assert response.json()["detail"], body[:40]
        probes = [client.head(path).status_code for path in ("/healthz", "/readyz")]
        after = client.post("/v1/predict", json={"user_id": 1, "item_ids": [1, 2]}).status_code
    print("hostile bodies:", statuses, "HEAD probes:", probes)
    assert all(400 <= status < 500 for status in statuses), statuses
    assert probes == [200, 200] and after == 200
