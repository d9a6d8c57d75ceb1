"""Issue 14 on a registered world (tests/support/explained.py): /v1/recommend leaves out training interactions, the
entity catalogue published with a version, and explanations faithful to the served KCAN head."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.support.explained import ExplainedWorld, explained_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, single_thread: None) -> ExplainedWorld:
    """KCAN @champion and BPR-MF @challenger, registered with their seen-items views and catalogues."""
    return explained_world(tmp_path_factory.mktemp("explained"))


@pytest.fixture(scope="module")
def client(world: ExplainedWorld) -> Iterator[TestClient]:
    """The app on the world, without the poller."""
    with TestClient(create_app(world.settings, poll=False), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def train_positives(world: ExplainedWorld) -> dict[int, set[int]]:
    """Each user's training positives, from the split training used (seed and protocol of the runs)."""
    from training.data.load import load_dataset
    from training.data.splits import make_split

    positives = make_split(load_dataset(world.settings).interactions, world.settings.seed).train_positives()
    return {int(u): set(map(int, items)) for u, items in positives.groupby("user")["item"]}


@pytest.mark.parametrize("variant", ["champion", "challenger"])
def test_recommend_never_returns_a_training_interaction_unless_asked(
    client: TestClient, train_positives: dict[int, set[int]], variant: str
) -> None:
    users = sorted(train_positives, key=lambda u: -len(train_positives[u]))[:15]
    returned_seen = 0
    for user in users:
        body = {"user_id": user, "k": 20}
        response = client.post("/v1/recommend", json=body, headers={"X-Graphrec-Variant": variant})
        assert response.status_code == 200, response.text
        items = [s["item_id"] for s in response.json()["scores"]]
        assert len(items) == 20 and response.json()["fallback"] is None
        assert not set(items) & train_positives[user], f"user {user} got training interactions back"
        kept = client.post(
            "/v1/recommend", json=body | {"exclude_seen": False}, headers={"X-Graphrec-Variant": variant}
        ).json()
        returned_seen += len({s["item_id"] for s in kept["scores"]} & train_positives[user])
    assert returned_seen > 0, "exclude_seen: false should keep some training interactions of active users"


def test_unknown_user_fallback_is_unaffected(client: TestClient) -> None:
    response = client.post("/v1/recommend", json={"user_id": 10**9, "k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["fallback"] == "unknown_user" and len(body["scores"]) == 5
    assert {s["source"] for s in body["scores"]} == {"popularity"}


def test_exclude_seen_must_be_a_boolean(client: TestClient) -> None:
    response = client.post("/v1/recommend", json={"user_id": 1, "exclude_seen": "no"})
    assert response.status_code == 422
    assert "exclude_seen" in response.text


def test_catalogue_names_every_node_and_links_kg_neighbours(world: ExplainedWorld, client: TestClient) -> None:
    from training.data.load import load_dataset

    dataset = load_dataset(world.settings)
    catalogue = client.app.state.service.manager.bindings["champion"].catalogue
    assert catalogue is not None and len(catalogue) == dataset.n_entities + dataset.n_users
    assert catalogue.kind(0) == "item" and catalogue.kind(dataset.n_entities) == "user"
    head, relation, tail = (int(v) for v in dataset.kg.iloc[0][["head", "relation", "tail"]])
    assert catalogue.relation(head, tail) == dataset.relation_names[relation]
    assert catalogue.relation(tail, head) == f"inverse:{dataset.relation_names[relation]}"
    assert catalogue.relation(dataset.n_entities, 0) == "interact"
    assert np.all([catalogue.display_name(n) for n in range(len(catalogue))])
