"""Fault injection against the serving service (issue 10, items 7, 8 and 12): bad input never yields a 500 or echoes
itself, credentials never reach the log, a registry that stays down is logged once, swaps are logged, HEAD probes."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from graphrec.settings import Settings
from graphrec.testing import free_port, wait_until
from serving.app import create_app
from serving.binding import BindingManager, ModelSource
from serving.contract import CHAMPION
from serving.errors import OutageLog
from serving.features import StoreUnavailable
from serving.pyfunc_model import ITEM_ID
from serving.redact import redact_text
from tests.support.serving import PublishedVersion, count_refreshes, dot_tables, popularity_table, publish_dot_version

N_USERS, N_ITEMS, DIM = 20, 30, 4
SECRET = "s3cr3t-pw"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, PublishedVersion, PublishedVersion]:
    """Two published versions: v1 holds @champion, v2 holds no alias (the swap test moves @champion to it)."""
    settings = Settings(work_dir=tmp_path_factory.mktemp("serving-faults") / "work")
    users, items = dot_tables(N_USERS, N_ITEMS, DIM, seed=0)
    popularity = popularity_table(items[ITEM_ID].to_numpy(), seed=0)
    first = publish_dot_version(settings, users, items, popularity)
    second = publish_dot_version(settings, *dot_tables(N_USERS, N_ITEMS, DIM, seed=1), alias=None)
    return settings, first, second


@pytest.fixture(scope="module")
def client(world: tuple[Settings, PublishedVersion, PublishedVersion]) -> Iterator[TestClient]:
    """The app on the world, without the poller."""
    with TestClient(create_app(world[0], poll=False), raise_server_exceptions=False) as test_client:
        yield test_client


def post_raw(client: TestClient, body: bytes, content_type: str = "application/json") -> tuple[int, str]:
    """POST raw bytes to /v1/predict; the status and the body text."""
    response = client.post("/v1/predict", content=body, headers={"content-type": content_type})
    return response.status_code, response.text


@pytest.mark.parametrize(
    ("body", "raw", "where"),
    [
        (b'{"user_id": NaN, "item_ids": [1]}', "NaN", "user_id"),
        (b'{"user_id": Infinity, "item_ids": [1]}', "Infinity", "user_id"),
        (b'{"user_id": 1, "item_ids": [-Infinity]}', "Infinity", "item_ids"),
        (b'{"user_id": 1e400, "item_ids": [1]}', "1e400", "user_id"),
        (b'{"user_id": 1, "item_ids": [1], "note": "\\ud800"}', "ud800", "note"),
        (b'{"user_id": 1, "item_ids": [1], "\\udfff": 1}', "udfff", "body"),
    ],
    ids=["nan", "infinity", "minus-infinity-item", "1e400", "lone-surrogate-value", "lone-surrogate-key"],
)
def test_unencodable_input_is_422_without_echo(client: TestClient, body: bytes, raw: str, where: str) -> None:
    status, text = post_raw(client, body)
    assert status == 422, text
    detail = client.post("/v1/predict", content=body, headers={"content-type": "application/json"}).json()["detail"]
    assert detail.startswith("invalid request: ") and where in detail
    if raw != "udfff":  # a bad field *name* is its location; its value never appears
        assert raw not in detail


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"hello world", "application/json"),
        (b"\xff\xfe\x00garbage", "text/plain"),
        (b'{"user_id": 1, "item_ids": [1]', "application/json"),
    ],
    ids=["broken-object", "plain-text", "binary-as-text-plain", "truncated"],
)
def test_non_json_bodies_are_422_without_echo(client: TestClient, body: bytes, content_type: str) -> None:
    status, text = post_raw(client, body, content_type)
    assert status == 422, text
    assert "garbage" not in text and "hello" not in text and "not json" not in text
    assert "Traceback" not in text


def test_validation_detail_names_location_and_message(client: TestClient) -> None:
    response = client.post("/v1/predict", json={"user_id": "seven", "item_ids": [1, 1]})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "body.user_id: Input should be a valid integer" in detail
    assert "body.item_ids: Value error, item_ids must be distinct" in detail
    assert "seven" not in detail


def test_head_on_probes(client: TestClient) -> None:
    healthz = client.head("/healthz")
    assert healthz.status_code == 200 and healthz.content == b""
    assert client.head("/readyz").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert sorted(paths["/healthz"]) == ["get"] and sorted(paths["/readyz"]) == ["get"]


def test_head_readyz_is_503_while_not_ready(
    world: tuple[Settings, PublishedVersion, PublishedVersion], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    settings = world[0].model_copy(update={"mlflow_tracking_uri": f"http://127.0.0.1:{free_port()}"})
    with TestClient(create_app(settings, poll=False)) as test_client:
        response = test_client.head("/readyz")
        assert response.status_code == 503 and response.headers["Retry-After"] == str(settings.serving_retry_after_s)


@pytest.mark.parametrize(
    ("uri", "redacted"),
    [
        ("http://user:secret@127.0.0.1:5000", "http://***@127.0.0.1:5000"),
        ("postgresql+psycopg2://u:p@ss@db:5432/mlflow", "postgresql+psycopg2://***@db:5432/mlflow"),
        ("https://token@mlflow.example/x?y=1", "https://***@mlflow.example/x?y=1"),
        ("sqlite:////tmp/a@b/mlflow.db", "sqlite:////tmp/a@b/mlflow.db"),
        ("http://host/path?mail=a@b", "http://host/path?mail=a@b"),
        ("databricks", "databricks"),
    ],
)
def test_redact_uri(uri: str, redacted: str) -> None:
    assert redact_text(uri) == redacted


def test_redact_text_masks_every_uri_in_a_message() -> None:
    text = "API request to http://u:pw@h:1/api failed; retried https://t@k/x"
    assert redact_text(text) == "API request to http://***@h:1/api failed; retried https://***@k/x"


class StubReader:
    """A feature reader whose refresh does nothing: the registry is what fails."""

    def refresh(self) -> None:
        """Nothing to re-read."""


@pytest.fixture
def unreachable_uri(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> str:
    """A tracking URI with credentials where nothing listens (MLflow told not to retry), with INFO logs captured."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    caplog.set_level(logging.INFO)
    return f"http://graphrec:{SECRET}@127.0.0.1:{free_port()}"


def test_unreachable_registry_logs_once_without_credentials(
    world: tuple[Settings, PublishedVersion, PublishedVersion],
    unreachable_uri: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uri = unreachable_uri
    manager = BindingManager(world[0].registered_model_name, ModelSource(uri), StubReader())  # type: ignore[arg-type]
    polls = count_refreshes(manager)
    manager.start(0.05)
    try:
        wait_until(lambda: polls() >= 5, timeout_s=60, what="five polls of an unreachable registry")
    finally:
        manager.stop()
    failures = [r for r in caplog.records if r.name == "serving.binding" and r.levelno >= logging.WARNING]
    assert len(failures) == 1, [r.getMessage() for r in failures]
    assert failures[0].exc_info is None and "\n" not in failures[0].getMessage()
    assert "RegistryUnavailable" in failures[0].getMessage()
    assert SECRET not in caplog.text and all(SECRET not in r.getMessage() for r in caplog.records)
    assert manager.last_error is not None and SECRET not in manager.last_error


def test_app_on_unreachable_registry_hides_credentials(
    world: tuple[Settings, PublishedVersion, PublishedVersion],
    unreachable_uri: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uri = unreachable_uri
    settings = world[0].model_copy(update={"mlflow_tracking_uri": uri, "serving_poll_interval_s": 0.05})
    with TestClient(create_app(settings)) as test_client:
        time.sleep(0.5)  # several polls
        ready = test_client.get("/readyz")
        assert ready.status_code == 503 and SECRET not in ready.text
    assert SECRET not in caplog.text
    refresh_errors = [r for r in caplog.records if r.name == "serving.binding" and r.levelno >= logging.ERROR]
    assert len(refresh_errors) <= 1


def test_swap_logs_one_info_line(
    client: TestClient, world: tuple[Settings, PublishedVersion, PublishedVersion], caplog: pytest.LogCaptureFixture
) -> None:
    settings, first, second = world
    manager = client.app.state.service.manager
    registry = MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)
    caplog.set_level(logging.INFO, logger="serving")
    registry.set_registered_model_alias(first.name, CHAMPION, second.version)
    try:
        manager.refresh()
        swaps = [r.getMessage() for r in caplog.records if r.name == "serving.binding" and r.levelno == logging.INFO]
        assert swaps == [f"{CHAMPION} of {first.name}: v{first.version} -> v{second.version}"]
        caplog.clear()
        manager.refresh()  # nothing moved: nothing logged
        assert not [r for r in caplog.records if r.name == "serving.binding"]
    finally:
        registry.set_registered_model_alias(first.name, CHAMPION, first.version)
        manager.refresh()


def test_serve_log_config_emits_serving_info(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import logging, logging.config
        from cli.serve import log_config
        logging.config.dictConfig(log_config("info"))
        logging.getLogger("serving.binding").info("champion of m: v1 -> v2")
        logging.getLogger("serving.binding").debug("hidden at info")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert "champion of m: v1 -> v2" in done.stderr and "hidden at info" not in done.stderr


@pytest.mark.parametrize(
    "body",
    [b'{"user_id": "\xff", "item_ids": [1]}', b'{"user_id": 1, "item_ids": [1], "n": "\xc3\x28"}', b"{}\x80"],
    ids=["invalid-byte-in-string", "broken-two-byte-sequence", "trailing-byte"],
)
def test_body_that_is_not_utf8_is_422_naming_the_encoding(client: TestClient, body: bytes) -> None:
    status, text = post_raw(client, body)
    assert status == 422, text
    assert text.startswith('{"detail":"invalid request: body: not valid UTF-8 (byte '), text


def test_other_http_errors_keep_their_status(client: TestClient) -> None:
    assert client.get("/nosuch").status_code == 404
    assert client.get("/v1/predict").status_code == 405


def test_an_outage_under_load_is_a_few_log_lines_not_one_per_request(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    outages = OutageLog(interval_s=30.0, clock=lambda: now[0])
    down = StoreUnavailable(f"redis://user:{SECRET}@127.0.0.1:1 refused")
    with caplog.at_level(logging.WARNING, logger="serving.errors"):
        for moment in (0.0, 1.0, 2.0, 31.0, 32.0):
            now[0] = moment
            outages.record("/v1/predict", down)
        outages.record("/v1/recommend", StoreUnavailable("another cause"))
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3 and SECRET not in "".join(lines)
    assert lines[1].endswith("(2 more 503s since the last line)") and "another cause" in lines[2]
