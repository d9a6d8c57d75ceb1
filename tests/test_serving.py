"""The serving app end to end on a tiny dot model published to MLflow and Feast by tests/support/serving.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from graphrec.settings import OnlineStoreKind, Settings
from graphrec.testing import RedisProcess, wait_until
from serving.app import create_app
from serving.binding import BindingManager
from serving.contract import CHALLENGER, CHAMPION
from serving.pyfunc_model import ITEM_ID, USER_ID
from serving.schemas import ScoresResponse
from tests.support.serving import (
    PublishedVersion,
    dot_tables,
    popularity_table,
    publish_dot_version,
    publish_features,
)

N_USERS, N_ITEMS, DIM = 200, 300, 8
TOKEN = "test-admin-token"
POLL_S = 1.0


def serving_settings(work_dir: Path, **overrides: object) -> Settings:
    """Settings of a test world: admin token, exhaustive recommend retrieval, fast polling."""
    defaults = {
        "serving_admin_token": TOKEN,
        "serving_recommend_candidates": N_ITEMS,
        "serving_poll_interval_s": POLL_S,
    }
    return Settings(work_dir=work_dir, **(defaults | overrides))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, PublishedVersion]:
    """One published champion on SQLite: 200 users, 300 items, 8-d dot model with item bias."""
    settings = serving_settings(tmp_path_factory.mktemp("serving") / "work")
    users, items = dot_tables(N_USERS, N_ITEMS, DIM, seed=0)
    return settings, publish_dot_version(settings, users, items, popularity_table(items[ITEM_ID].to_numpy(), seed=0))


@pytest.fixture(scope="module")
def client(world: tuple[Settings, PublishedVersion]) -> Iterator[TestClient]:
    """The app on the world, without the poller."""
    with TestClient(create_app(world[0], poll=False), raise_server_exceptions=False) as test_client:
        yield test_client


def expected_logits(published: PublishedVersion, user_id: int, item_ids: list[int]) -> np.ndarray:
    """ScorerModel.predict (the pandas path) on the same pairs."""
    user = published.users.set_index(USER_ID).loc[user_id]
    items = published.items.set_index(ITEM_ID).loc[item_ids]
    frame = pd.DataFrame(
        {
            USER_ID: user_id,
            ITEM_ID: item_ids,
            "user_embedding": [user["embedding"]] * len(item_ids),
            "item_embedding": list(items["embedding"]),
            "item_bias": items["bias"].to_numpy(),
        }
    )
    return published.model.predict(None, frame)


def predict(client: TestClient, user_id: int, item_ids: list[int], **headers: str) -> ScoresResponse:
    response = client.post("/v1/predict", json={"user_id": user_id, "item_ids": item_ids}, headers=headers)
    assert response.status_code == 200, response.text
    return ScoresResponse.model_validate(response.json())


def test_predict_matches_pyfunc_and_ranks(client: TestClient, world: tuple[Settings, PublishedVersion]) -> None:
    published = world[1]
    item_ids = [5, 17, 250, 3, 99, 42, 0, 299]
    result = predict(client, 7, item_ids)
    assert result.model.version == published.version and result.model.alias == CHAMPION
    assert result.fallback is None and result.items_without_features == []
    served = {s.item_id: s.score for s in result.scores}
    np.testing.assert_allclose([served[i] for i in item_ids], expected_logits(published, 7, item_ids), rtol=1e-5)
    assert [s.rank for s in result.scores] == list(range(1, len(item_ids) + 1))
    assert [s.score for s in result.scores] == sorted(served.values(), reverse=True)
    assert {s.source for s in result.scores} == {"model"}


def test_recommend_is_exact_top_k(client: TestClient, world: tuple[Settings, PublishedVersion]) -> None:
    published = world[1]
    response = client.post("/v1/recommend", json={"user_id": 11, "k": 5})
    assert response.status_code == 200, response.text
    result = ScoresResponse.model_validate(response.json())
    every = expected_logits(published, 11, published.items[ITEM_ID].tolist())
    assert [s.item_id for s in result.scores] == list(np.argsort(-every)[:5])
    assert [s.rank for s in result.scores] == [1, 2, 3, 4, 5]


def test_unknown_user_falls_back_to_popularity(client: TestClient, world: tuple[Settings, PublishedVersion]) -> None:
    popularity = world[1].popularity.set_index(ITEM_ID)["popularity"]
    item_ids = [10, 20, 30, 40, 50]
    result = predict(client, N_USERS + 1000, item_ids)
    assert result.fallback == "unknown_user"
    assert {s.source for s in result.scores} == {"popularity"}
    ranked = [s.item_id for s in result.scores]
    assert [popularity[i] for i in ranked] == sorted(popularity[item_ids], reverse=True)
    recommended = client.post("/v1/recommend", json={"user_id": N_USERS + 1000, "k": 3}).json()
    assert recommended["fallback"] == "unknown_user"
    assert [s["item_id"] for s in recommended["scores"]] == list(
        popularity.sort_values(ascending=False, kind="stable").index[:3]
    )


def test_items_without_features_are_flagged_and_ranked_last(client: TestClient) -> None:
    result = predict(client, 3, [N_ITEMS + 5, 1, N_ITEMS + 9, 2])
    assert result.fallback == "items_without_features"
    assert sorted(result.items_without_features) == [N_ITEMS + 5, N_ITEMS + 9]
    assert [s.source for s in result.scores] == ["model", "model", "popularity", "popularity"]


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": 1, "item_ids": []},
        {"user_id": 1, "item_ids": list(range(1001))},
        {"user_id": "1", "item_ids": [1]},
        {"user_id": 1, "item_ids": ["a"]},
        {"user_id": 1.5, "item_ids": [1]},
        {"user_id": True, "item_ids": [1]},
        {"user_id": -1, "item_ids": [1]},
        {"user_id": 1, "item_ids": [-3]},
        {"user_id": 1, "item_ids": [2**64]},
        {"user_id": 1, "item_ids": [4, 4]},
        {"item_ids": [1]},
        {"user_id": 1, "item_ids": [1], "extra": 1},
        [1, 2],
    ],
    ids=[
        "empty",
        "1001",
        "str-user",
        "str-item",
        "float",
        "bool",
        "neg-user",
        "neg-item",
        "huge",
        "duplicate",
        "missing",
        "extra-field",
        "not-object",
    ],
)
def test_malformed_predict_bodies_are_422(client: TestClient, body: object) -> None:
    response = client.post("/v1/predict", json=body)
    assert response.status_code == 422
    assert "Traceback" not in response.text


@pytest.mark.parametrize("body", [{"user_id": 1, "k": 0}, {"user_id": 1, "k": 101}, {"user_id": 1, "k": "3"}])
def test_malformed_recommend_bodies_are_422(client: TestClient, body: object) -> None:
    assert client.post("/v1/recommend", json=body).status_code == 422


def test_unknown_variant_header_is_422(client: TestClient) -> None:
    response = client.post("/v1/predict", json={"user_id": 1, "item_ids": [1]}, headers={"X-Graphrec-Variant": "other"})
    assert response.status_code == 422


def test_challenger_share_is_sticky_per_user() -> None:
    manager = BindingManager("m", source=None, reader=None, challenger_share=0.3)  # type: ignore[arg-type]
    champion, challenger = object(), object()
    manager.bindings = {CHAMPION: champion, CHALLENGER: challenger}  # type: ignore[dict-item]
    picks = [manager.pick(user) is challenger for user in range(2000)]
    assert 0.25 < np.mean(picks) < 0.35
    assert picks == [manager.pick(user) is challenger for user in range(2000)]
    assert manager.pick(1, CHAMPION) is champion and manager.pick(1, CHALLENGER) is challenger


def test_invalid_json_is_422(client: TestClient) -> None:
    response = client.post("/v1/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_oversized_body_is_413(client: TestClient, world: tuple[Settings, PublishedVersion]) -> None:
    big = b'{"user_id": 1, "item_ids": [1]}' + b" " * world[0].serving_max_body_bytes
    response = client.post("/v1/predict", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed body is counted
        yield b'{"user_id": 1, "item_ids": [1]}'
        for _ in range(world[0].serving_max_body_bytes // 1024 + 1):
            yield b" " * 1024

    assert client.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"}).status_code == 413


def test_admin_reload_requires_the_token(client: TestClient, world: tuple[Settings, PublishedVersion]) -> None:
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 403
    response = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.json()["version"] == world[1].version


def test_admin_disabled_without_token(world: tuple[Settings, PublishedVersion]) -> None:
    settings = world[0].model_copy(update={"serving_admin_token": None})
    with TestClient(create_app(settings, poll=False)) as test_client:
        assert test_client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 403


ROUTES = {
    "/v1/predict": ["post"],
    "/v1/recommend": ["post"],
    "/v1/feedback": ["post"],
    "/v1/model": ["get"],
    "/healthz": ["get"],
    "/readyz": ["get"],
    "/metrics": ["get"],
    "/admin/reload": ["post"],
}


def test_openapi_lists_every_route_with_its_contract(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {path: sorted(operations) for path, operations in paths.items()} == ROUTES
    for path in ("/v1/predict", "/v1/recommend"):
        operation = paths[path]["post"]
        assert [(p["name"], p["in"]) for p in operation["parameters"]] == [("X-Graphrec-Variant", "header")]
        assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ScoresResponse"
        }
    reload = paths["/admin/reload"]["post"]
    assert [(p["name"], p["in"]) for p in reload["parameters"]] == [("authorization", "header")]
    assert set(reload["responses"]) == {"200", "401", "403", "422", "503"}
    assert set(paths["/readyz"]["get"]["responses"]) == {"200", "503"}


def test_admin_errors_are_error_bodies(client: TestClient) -> None:
    missing = client.post("/admin/reload")
    assert missing.json() == {"detail": "a Bearer token is required"}
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    wrong = client.post("/admin/reload", headers={"Authorization": "Bearer wrong"})
    assert wrong.json() == {"detail": "invalid admin token"} and "WWW-Authenticate" not in wrong.headers


def test_model_endpoint_and_probes(client: TestClient, world: tuple[Settings, PublishedVersion]) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    info = client.get("/v1/model").json()
    assert info["version"] == world[1].version and info["items_cached"] == N_ITEMS
    assert info["item_view"].endswith(f"_v{world[1].version}_item") and info["watermark"] is not None


def test_metrics_are_exposed(client: TestClient, world: tuple[Settings, PublishedVersion]) -> None:
    predict(client, 1, [1, 2])
    predict(client, N_USERS + 1, [1, 2])
    text = client.get("/metrics").text
    assert 'graphrec_request_seconds_count{route="/v1/predict"}' in text
    assert 'graphrec_requests_total{outcome="fallback",route="/v1/predict"}' in text
    assert 'graphrec_fallbacks_total{reason="unknown_user"}' in text
    assert f'graphrec_model_version{{alias="champion"}} {float(world[1].version)}' in text


def test_unexpected_errors_are_generic_500s(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    service = client.app.state.service

    def broken(*args: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service, "_scores", broken)
    response = client.post("/v1/predict", json={"user_id": 1, "item_ids": [1]})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error"}


def test_naive_path_gives_the_same_answer(client: TestClient, world: tuple[Settings, PublishedVersion]) -> None:
    item_ids = [4, 8, 15, 16, 23, 42, N_ITEMS + 1]
    with TestClient(create_app(world[0], naive=True, poll=False)) as naive_client:
        naive = predict(naive_client, 9, item_ids)
    fast = predict(client, 9, item_ids)
    assert [s.item_id for s in naive.scores] == [s.item_id for s in fast.scores]
    np.testing.assert_allclose([s.score for s in naive.scores], [s.score for s in fast.scores], rtol=1e-5)
    assert naive.fallback == fast.fallback == "items_without_features"


def test_registry_unreachable_is_503_with_retry_after(
    world: tuple[Settings, PublishedVersion], monkeypatch: pytest.MonkeyPatch
) -> None:
    from graphrec.testing import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    settings = world[0].model_copy(update={"mlflow_tracking_uri": f"http://127.0.0.1:{free_port()}"})
    with TestClient(create_app(settings, poll=False)) as test_client:
        ready = test_client.get("/readyz")
        assert ready.status_code == 503 and ready.headers["Retry-After"] == str(settings.serving_retry_after_s)
        response = test_client.post("/v1/predict", json={"user_id": 1, "item_ids": [1]})
        assert response.status_code == 503 and "Retry-After" in response.headers


def test_lifecycle_ready_swap_challenger_and_watermark(tmp_path: Path) -> None:
    """Not ready without a champion; ready once one is published; a new champion is served within two poll
    intervals; the challenger header routes to the challenger; re-materialized items invalidate the item cache."""
    settings = serving_settings(tmp_path / "work")
    users, items = dot_tables(N_USERS, N_ITEMS, DIM, seed=1)
    popularity = popularity_table(items[ITEM_ID].to_numpy(), seed=1)
    with TestClient(create_app(settings)) as test_client:
        assert test_client.get("/readyz").status_code == 503
        assert test_client.post("/v1/predict", json={"user_id": 1, "item_ids": [1]}).status_code == 503
        first = publish_dot_version(settings, users, items, popularity)
        wait_until(lambda: test_client.get("/readyz").status_code == 200, 2 * POLL_S + 5, "ready", interval_s=0.05)
        assert predict(test_client, 1, [1, 2]).model.version == first.version

        users2, items2 = dot_tables(N_USERS, N_ITEMS, DIM, seed=2)
        second = publish_dot_version(settings, users2, items2, alias=None)
        client = MlflowClient()
        client.set_registered_model_alias(settings.registered_model_name, CHAMPION, second.version)
        client.set_registered_model_alias(settings.registered_model_name, CHALLENGER, first.version)
        waited = wait_until(
            lambda: predict(test_client, 1, [1, 2]).model.version == second.version,
            2 * POLL_S + 5,
            "the new champion served",
            interval_s=0.05,
        )
        assert waited <= 2 * POLL_S + 1.0, f"served {waited:.2f} s after the alias moved"  # two polls + model load
        wait_until(
            lambda: predict(test_client, 1, [1], **{"X-Graphrec-Variant": "challenger"}).model.version == first.version,
            2 * POLL_S + 5,
            "the challenger served",
            interval_s=0.05,
        )
        result = predict(test_client, 4, [7, 8, 9])
        np.testing.assert_allclose(
            sorted(s.score for s in result.scores), sorted(expected_logits(second, 4, [7, 8, 9])), rtol=1e-5
        )

        moved = items2.assign(embedding=list(np.stack(items2["embedding"]) * -1.0))
        time.sleep(1.1)  # a later snapshot (second resolution) than the first publication
        publish_features(settings, settings.registered_model_name, second.version, users2, moved, None)
        flipped = PublishedVersion(second.name, second.version, second.model, users2, moved, popularity)
        wait_until(
            lambda: np.allclose(
                sorted(s.score for s in predict(test_client, 4, [7, 8, 9]).scores),
                sorted(expected_logits(flipped, 4, [7, 8, 9])),
                rtol=1e-5,
            ),
            2 * POLL_S + 5,
            "the re-materialized item features served",
            interval_s=0.05,
        )


def test_online_store_down_is_503_then_recovers(tmp_path: Path) -> None:
    """Redis stopped: 503 + Retry-After; Redis back: answers again without a restart."""
    redis_server = RedisProcess(tmp_path / "redis")
    try:
        redis_server.start()
    except FileNotFoundError as missing:
        pytest.skip(str(missing))
    try:
        settings = serving_settings(tmp_path / "work", online_store=OnlineStoreKind.redis, redis_url=redis_server.url)
        users, items = dot_tables(50, 60, DIM, seed=3)
        publish_dot_version(settings, users, items, popularity_table(items[ITEM_ID].to_numpy(), seed=3))
        with TestClient(create_app(settings, poll=False)) as test_client:
            assert predict(test_client, 1, [1, 2]).fallback is None
            redis_server.stop()
            down = test_client.post("/v1/predict", json={"user_id": 1, "item_ids": [1, 2]})
            assert down.status_code == 503 and down.headers["Retry-After"] == str(settings.serving_retry_after_s)
            assert "Traceback" not in down.text
            redis_server.start()
            wait_until(
                lambda: test_client.post("/v1/predict", json={"user_id": 1, "item_ids": [1, 2]}).status_code == 200,
                10,
                "predict answering after Redis came back",
                interval_s=0.05,
            )
            assert predict(test_client, 1, [1, 2]).fallback is None
    finally:
        redis_server.stop()


BLOCKED_IMPORT = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("training", "dgl"):
                raise ImportError(f"serving must not import {name}")
            return None

    sys.meta_path.insert(0, Block())
    sys.modules["dgl"] = None
    from fastapi.testclient import TestClient
    from graphrec.settings import Settings
    import serving.app, serving.binding, serving.features, serving.fallback, serving.metrics, serving.client
    import cli.serve, featurestore.config
    with TestClient(serving.app.create_app(Settings(work_dir=sys.argv[1]), poll=False)) as client:
        assert client.get("/readyz").status_code == 503
        assert client.post("/v1/predict", json={"user_id": 1, "item_ids": [1]}).status_code == 503
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("training", "dgl") and sys.modules[m] is not None)
    assert not loaded, loaded
    print("clean")
    """
)


def test_serving_imports_neither_training_nor_dgl(tmp_path: Path) -> None:
    command = [sys.executable, "-c", BLOCKED_IMPORT, str(tmp_path / "work")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("clean")
