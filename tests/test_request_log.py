"""Request ids, feedback and the request log on the tiny served world of tests/conftest.py (``serving_world``)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from graphrec.settings import Settings
from graphrec.testing import postgres_bin_dir, running_postgres
from serving.app import create_app
from serving.requestlog import LoggedRequest, SqlSink
from tests.support.serving import PublishedVersion

World = tuple[Settings, PublishedVersion, PublishedVersion]
ITEMS = [1, 2, 3, 4, 5]
FLUSH_S = 30.0


def log_settings(world: World, tmp_path: Path, **overrides: object) -> Settings:
    """The world's settings with a request log of the test's own."""
    return world[0].model_copy(update={"serving_request_log_url": f"sqlite:///{tmp_path / 'requests.db'}", **overrides})


@pytest.fixture
def served(serving_world: World, tmp_path: Path) -> Iterator[tuple[TestClient, Settings]]:
    """The app with the request log on, every request sampling its features."""
    settings = log_settings(serving_world, tmp_path, serving_request_log_feature_share=1.0)
    with TestClient(create_app(settings, poll=False), raise_server_exceptions=False) as client:
        yield client, settings


def flush(client: TestClient) -> None:
    assert client.app.state.request_log.flush(FLUSH_S), "the request log did not drain"


def metric(client: TestClient, name: str, **labels: str) -> float:
    """One sample of /metrics (0 when absent)."""
    text = client.get("/metrics").text
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}{re.escape('{' + wanted + '}') if labels else ''} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_scores_carry_request_id_and_arm_and_are_logged(served: tuple[TestClient, Settings]) -> None:
    client, settings = served
    first = client.post("/v1/predict", json={"user_id": 3, "item_ids": ITEMS}).json()
    second = client.post("/v1/recommend", json={"user_id": 4, "k": 3}).json()
    assert first["arm"] == "champion" and second["arm"] == "champion"
    assert len({first["request_id"], second["request_id"]}) == 2
    flush(client)
    rows = SqlSink(settings.request_log_uri).requests().set_index("request_id")
    row = rows.loc[first["request_id"]]
    assert row["route"] == "predict" and row["user_id"] == 3 and row["assignment"] == "split"
    assert row["model_version"] == first["model"]["version"] and row["arm"] == "champion"
    assert row["item_ids"] == [s["item_id"] for s in first["scores"]]
    assert row["scores"] == pytest.approx([s["score"] for s in first["scores"]], rel=1e-6)
    assert row["feature_watermark"] is not None
    sample = row["features"]
    assert set(sample["user"]) == {"embedding"} and len(sample["items"]) == 3
    assert rows.loc[second["request_id"], "route"] == "recommend"


def test_feedback_is_validated_and_logged(served: tuple[TestClient, Settings]) -> None:
    client, settings = served
    response = client.post("/v1/predict", json={"user_id": 5, "item_ids": ITEMS}).json()
    request_id = response["request_id"]
    events = [{"item_id": 2, "event": "impression"}, {"item_id": 2, "event": "click"}]
    accepted = client.post("/v1/feedback", json={"request_id": request_id, "events": events})
    assert accepted.status_code == 202 and accepted.json()["accepted"] == 2

    unknown = client.post("/v1/feedback", json={"request_id": "nope", "events": events[:1]})
    assert unknown.status_code == 404 and "unknown request_id 'nope'" in unknown.json()["detail"]
    stranger = client.post(
        "/v1/feedback", json={"request_id": request_id, "events": [{"item_id": 9, "event": "click"}]}
    )
    assert stranger.status_code == 422 and "item 9 was not in the response" in stranger.json()["detail"]
    again = client.post("/v1/feedback", json={"request_id": request_id, "events": events[1:]})
    assert again.status_code == 409 and "duplicate click for item 2" in again.json()["detail"]
    twice = [{"item_id": 3, "event": "impression"}] * 2
    repeated = client.post("/v1/feedback", json={"request_id": request_id, "events": twice})
    assert repeated.status_code == 409 and "duplicate impression for item 3" in repeated.json()["detail"]
    bad = client.post("/v1/feedback", json={"request_id": request_id, "events": [{"item_id": 3, "event": "like"}]})
    assert bad.status_code == 422 and "events.0.event" in bad.json()["detail"]

    flush(client)
    stored = SqlSink(settings.request_log_uri).feedback()
    assert sorted(zip(stored["item_id"], stored["event"], strict=True)) == [(2, "click"), (2, "impression")]
    assert set(stored["request_id"]) == {request_id}  # nothing of the rejected calls was recorded


def test_feedback_on_a_request_no_longer_in_memory_is_checked_against_the_log(
    serving_world: World, tmp_path: Path
) -> None:
    """A restarted service validates feedback against the stored rows: known items accepted, stored events 409."""
    settings = log_settings(serving_world, tmp_path)
    with TestClient(create_app(settings, poll=False)) as client:
        request_id = client.post("/v1/predict", json={"user_id": 1, "item_ids": ITEMS}).json()["request_id"]
        client.post("/v1/feedback", json={"request_id": request_id, "events": [{"item_id": 4, "event": "click"}]})
    with TestClient(create_app(settings, poll=False)) as restarted:
        answer = restarted.post(
            "/v1/feedback", json={"request_id": request_id, "events": [{"item_id": 4, "event": "impression"}]}
        )
        assert answer.status_code == 202
        duplicate = restarted.post(
            "/v1/feedback", json={"request_id": request_id, "events": [{"item_id": 4, "event": "click"}]}
        )
        assert duplicate.status_code == 409


def test_concurrent_requests_and_feedback_log_exactly_once(served: tuple[TestClient, Settings]) -> None:
    client, settings = served
    n = 120
    # counters are deltas: importing Feast switches prometheus_client to multiprocess mode, where the apps of one
    # process share each counter's value
    written = metric(client, "graphrec_request_log_rows_total", kind="request")
    shed = metric(client, "graphrec_request_log_shed_total", kind="request", reason="queue_full")

    def one(user: int) -> tuple[int, int]:
        answer = client.post("/v1/predict", json={"user_id": user % 20, "item_ids": ITEMS})
        request_id = answer.json()["request_id"]
        events = [{"item_id": ITEMS[0], "event": "impression"}, {"item_id": ITEMS[1], "event": "click"}]
        feedback = client.post("/v1/feedback", json={"request_id": request_id, "events": events})
        return answer.status_code, feedback.status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(n)))
    assert statuses == [(200, 202)] * n
    flush(client)
    sink = SqlSink(settings.request_log_uri)
    assert len(sink.requests()) == n and sink.requests()["request_id"].is_unique
    assert len(sink.feedback()) == 2 * n
    assert metric(client, "graphrec_request_log_rows_total", kind="request") - written == n
    assert metric(client, "graphrec_request_log_shed_total", kind="request", reason="queue_full") == shed


class StalledSink:
    """A sink whose writes wait until released: the writer thread stalls on the first batch."""

    def __init__(self, inner: SqlSink):
        self.inner, self.release = inner, threading.Event()

    def write(self, requests: Sequence[dict[str, Any]], feedback: Sequence[dict[str, Any]]) -> None:
        self.release.wait(FLUSH_S)
        self.inner.write(requests, feedback)

    def find(self, request_id: str) -> LoggedRequest | None:
        return self.inner.find(request_id)


def test_stalled_writer_sheds_logging_never_responses(serving_world: World, tmp_path: Path) -> None:
    settings = log_settings(serving_world, tmp_path, serving_request_log_queue=4)
    sink = StalledSink(SqlSink(settings.request_log_uri))
    n = 20
    with TestClient(create_app(settings, poll=False, request_sink=sink)) as client:
        before = metric(client, "graphrec_request_log_shed_total", kind="request", reason="queue_full")
        answers = [client.post("/v1/predict", json={"user_id": u, "item_ids": ITEMS}) for u in range(n)]
        assert [a.status_code for a in answers] == [200] * n
        shed = metric(client, "graphrec_request_log_shed_total", kind="request", reason="queue_full") - before
        assert shed >= n - 8  # taken: at most the queue (4) and the batch the stalled writer holds (at most 4)
        assert metric(client, "graphrec_request_log_queue_depth") == 4
        full = client.post(
            "/v1/feedback",
            json={"request_id": answers[-1].json()["request_id"], "events": [{"item_id": 1, "event": "click"}]},
        )
        assert full.status_code in (404, 503)  # the last request was shed (unknown) or the queue is full
        sink.release.set()
        flush(client)
        assert len(sink.inner.requests()) == n - shed


def test_logging_off_keeps_request_ids_and_refuses_feedback(serving_world: World, tmp_path: Path) -> None:
    settings = log_settings(serving_world, tmp_path, serving_request_log=False)
    with TestClient(create_app(settings, poll=False)) as client:
        answer = client.post("/v1/predict", json={"user_id": 2, "item_ids": ITEMS}).json()
        assert answer["request_id"] and answer["arm"] == "champion"
        refused = client.post(
            "/v1/feedback", json={"request_id": answer["request_id"], "events": [{"item_id": 1, "event": "click"}]}
        )
        assert refused.status_code == 503 and "request logging is off" in refused.json()["detail"]
    assert not (tmp_path / "requests.db").exists()


def test_metrics_show_watermark_ages_and_fallback_ratio(served: tuple[TestClient, Settings]) -> None:
    client, _ = served
    client.post("/v1/predict", json={"user_id": 10**6, "item_ids": ITEMS})  # unknown user: a fallback
    client.post("/v1/predict", json={"user_id": 1, "item_ids": ITEMS})
    assert 0 < metric(client, "graphrec_fallback_ratio") < 1
    text = client.get("/metrics").text
    ages = re.findall(r'^graphrec_feature_watermark_age_seconds\{view="([^"]+)"\} (\S+)$', text, re.MULTILINE)
    assert "item_graph_stats" in {view for view, _ in ages}
    assert all(float(age) >= 0 for _, age in ages)


def test_replicas_share_one_postgresql_log(serving_world: World) -> None:
    """Two services on one PostgreSQL log (the scaled-out setup): feedback reaches either replica, the same event
    accepted by both is stored once."""
    if postgres_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); the shared request log is skipped")
    with running_postgres() as database:
        settings = serving_world[0].model_copy(update={"serving_request_log_url": database})
        with (
            TestClient(create_app(settings, poll=False)) as first,
            TestClient(create_app(settings, poll=False)) as second,
        ):
            request_id = first.post("/v1/predict", json={"user_id": 3, "item_ids": ITEMS}).json()["request_id"]
            flush(first)
            click = {"request_id": request_id, "events": [{"item_id": 2, "event": "click"}]}
            assert second.post("/v1/feedback", json=click).status_code == 202
            assert first.post("/v1/feedback", json=click).status_code == 202  # neither replica saw the other's event
            assert second.post("/v1/feedback", json=click).status_code == 409
            unknown = second.post("/v1/feedback", json={**click, "request_id": "missing"})
            assert unknown.status_code == 404
            flush(first)
            flush(second)
        sink = SqlSink(database)
        assert sink.requests()["request_id"].tolist() == [request_id]
        assert sink.feedback()[["item_id", "event"]].values.tolist() == [[2, "click"]]
