"""Issue 14 on a registered world (tests/support/explained.py): /v1/recommend leaves out training interactions, the
entity catalogue published with a version, and explanations faithful to the served KCAN head."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from graphrec.settings import Settings
from serving.app import create_app
from serving.catalogue import Catalogue
from serving.contract import SEEN_FEATURE
from serving.pyfunc_model import ITEM_ID, USER_ID
from serving.scoring.kcan_scorer import KCANScorer
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


@pytest.fixture(scope="module")
def kcan_tables(world: ExplainedWorld) -> tuple[pd.DataFrame, pd.DataFrame, KCANScorer]:
    """The champion's published user and item feature tables (from its run) and its scorer, read apart from the
    service so the test recomputes scores on its own path."""
    from mlflow import MlflowClient

    from registry.publish import download_export
    from serving.model_integrity import load_verified_model

    client = MlflowClient()
    name = world.settings.registered_model_name
    run_id = client.get_model_version(name, world.kcan_version).run_id
    users, items = download_export(run_id)
    model = load_verified_model(client, world.settings.mlflow_uri, name, world.kcan_version)
    return users.set_index(USER_ID), items.set_index(ITEM_ID), model.scorer()


def rows_of(table: pd.DataFrame, ids: list[int]) -> dict[str, np.ndarray]:
    """Feature rows of ``ids`` as the scorer reads them (array features stacked)."""
    frame = table.loc[ids]
    return {c: np.stack(frame[c].to_numpy()) if frame[c].dtype == object else frame[c].to_numpy() for c in frame}


def removed(rows: dict[str, np.ndarray], node: int) -> dict[str, np.ndarray]:
    """The rows with ``node`` taken out of the star (its slots set to padding)."""
    ids = rows["kcan_nbr_id"].astype(np.int64)
    return rows | {"kcan_nbr_id": np.where(ids == node, -1, ids)}


def kept_nodes(rows: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> set[int]:
    """The star's real neighbour nodes other than the pair's other end."""
    ids = rows["kcan_nbr_id"][0].astype(np.int64)
    return set(ids[(ids >= 0) & (ids != int(other["kcan_node_id"][0]))].tolist())


def score_change(scorer: KCANScorer, user_rows: dict, item_rows: dict, side: str, node: int) -> float:
    """The served logit minus the logit with ``node`` removed from the ``side`` star, scored by the scorer alone."""
    base = scorer.score(user_rows, item_rows)[0]
    if side == "user":
        return float(base - scorer.score(removed(user_rows, node), item_rows)[0])
    return float(base - scorer.score(user_rows, removed(item_rows, node))[0])


def test_leave_one_out_is_faithful_over_200_pairs(
    client: TestClient, kcan_tables: tuple[pd.DataFrame, pd.DataFrame, KCANScorer]
) -> None:
    users, items, scorer = kcan_tables
    rng = np.random.default_rng(0)
    sampled_users = rng.choice(users.index.to_numpy(), size=40, replace=False)
    top_changes, random_changes, checked = [], [], 0
    for user in sampled_users.tolist():
        candidates = rng.choice(items.index.to_numpy(), size=5, replace=False).tolist()
        response = client.post("/v1/predict", json={"user_id": user, "item_ids": candidates, "explain": True})
        assert response.status_code == 200, response.text
        for scored in response.json()["scores"]:
            explanation = scored["explanation"]
            assert explanation["method"] == "leave_one_out"
            user_rows, item_rows = rows_of(users, [user]), rows_of(items, [scored["item_id"]])
            assert scorer.score(user_rows, item_rows)[0] == pytest.approx(scored["score"], abs=1e-5)
            reasons = [("user", r) for r in explanation["user_side"]] + [("item", r) for r in explanation["item_side"]]
            for side, reason in reasons:  # every reported contribution is the recomputed change
                recomputed = score_change(scorer, user_rows, item_rows, side, reason["node_id"])
                assert reason["contribution"] == pytest.approx(recomputed, abs=1e-5)
                checked += 1
            top_side, top = max(reasons, key=lambda sr: abs(sr[1]["contribution"]))
            others = [("user", n) for n in kept_nodes(user_rows, item_rows)]
            others += [("item", n) for n in kept_nodes(item_rows, user_rows)]
            others = [(side, node) for side, node in others if (side, node) != (top_side, top["node_id"])]
            side, node = others[rng.integers(len(others))]
            top_changes.append(abs(score_change(scorer, user_rows, item_rows, top_side, top["node_id"])))
            random_changes.append(abs(score_change(scorer, user_rows, item_rows, side, node)))
    assert len(top_changes) == 200 and checked >= 200 * 2
    top_changes, random_changes = np.array(top_changes), np.array(random_changes)
    print(
        f"|score change| removing the top-attributed neighbour: mean {top_changes.mean():.4f}; a random kept one: "
        f"{random_changes.mean():.4f}; top larger in {(top_changes > random_changes).mean():.0%} of 200 pairs"
    )
    assert top_changes.mean() > random_changes.mean()
    assert (top_changes > random_changes).mean() > 0.5


def test_recommend_explains_with_names_relations_and_kinds(client: TestClient) -> None:
    response = client.post("/v1/recommend", json={"user_id": 3, "k": 4, "explain": True})
    assert response.status_code == 200, response.text
    scores = response.json()["scores"]
    assert len(scores) == 4
    for scored in scores:
        explanation = scored["explanation"]
        assert explanation["method"] == "leave_one_out"
        assert 0 < len(explanation["user_side"]) <= 3 and 0 < len(explanation["item_side"]) <= 3
        for reason in explanation["user_side"] + explanation["item_side"]:
            assert reason["kind"] in ("item", "entity", "user") and reason["name"]
        assert {r["relation"] for r in explanation["user_side"]} == {"interact"}
        assert all(r["relation"] for r in explanation["item_side"])


def test_baseline_explains_with_nearest_seen_items(client: TestClient, train_positives: dict[int, set[int]]) -> None:
    user = max(train_positives, key=lambda u: len(train_positives[u]))
    body = {"user_id": user, "item_ids": [0, 1, 2], "explain": True}
    response = client.post("/v1/predict", json=body, headers={"X-Graphrec-Variant": "challenger"})
    assert response.status_code == 200, response.text
    for scored in response.json()["scores"]:
        explanation = scored["explanation"]
        assert explanation["method"] == "nearest_seen_items" and explanation["item_side"] == []
        reasons = explanation["user_side"]
        assert 0 < len(reasons) <= 3 and all(r["contribution"] is None for r in reasons)
        assert {r["node_id"] for r in reasons} <= train_positives[user] - {scored["item_id"]}
        similarities = [r["similarity"] for r in reasons]
        assert similarities == sorted(similarities, reverse=True)


def test_fallback_scores_are_never_explained(client: TestClient) -> None:
    response = client.post("/v1/predict", json={"user_id": 10**9, "item_ids": [0, 1], "explain": True})
    assert response.status_code == 200
    assert [s["explanation"] for s in response.json()["scores"]] == [None, None]
    plain = client.post("/v1/predict", json={"user_id": 1, "item_ids": [0, 1]}).json()
    assert all("explanation" not in s for s in plain["scores"])


def test_cli_prints_readable_reasons(client: TestClient) -> None:
    from rich.console import Console

    from cli.serve import explanation_text
    from serving.schemas import ScoresResponse

    body = {"user_id": 5, "item_ids": [0, 1, 10**6], "explain": True}
    result = ScoresResponse.model_validate(client.post("/v1/predict", json=body).json())
    console = Console(width=80, record=True)
    for scored in result.scores:
        console.print(explanation_text(scored))
    text = console.export_text()
    print(text)
    assert "score change if removed" in text and "user side" in text and "item side" in text
    assert "(item, interact)" in text
    assert "no explanation (popularity fallback)" in text  # item 10**6 has no features
    assert max(len(line) for line in text.splitlines()) <= 80


def test_lastfm_catalogue_names_artists_and_relations(real_data_dir: Path, tmp_path: Path) -> None:
    from registry.explain_tables import build_catalogue
    from training.data.lastfm import load_lastfm

    settings = Settings(work_dir=tmp_path / "work", data_dir=real_data_dir, dataset="lastfm")
    dataset = load_lastfm(real_data_dir)
    catalogue = build_catalogue(settings, dataset)
    artists = pd.read_csv(real_data_dir / "hetrec-lastfm-2k" / "artists.dat", sep="\t", quoting=3, usecols=[0, 1])
    names = dict(zip(artists["id"], artists["name"], strict=True))
    for item in (0, 1, dataset.n_items - 1):
        assert catalogue.display_name(item) == names[int(dataset.item_raw_ids[item])]
    head, relation, tail = (int(v) for v in dataset.kg.iloc[0][["head", "relation", "tail"]])
    assert catalogue.relation(head, tail) == dataset.relation_names[relation]
    assert "." in dataset.relation_names[relation]  # Freebase names such as music.artist.origin
    catalogue.save(tmp_path / "catalogue")
    loaded = Catalogue.load(tmp_path / "catalogue")
    assert list(loaded.names) == list(catalogue.names) and loaded.links == catalogue.links
    assert loaded.relations == catalogue.relations and list(loaded.kinds) == list(catalogue.kinds)


def test_registration_refuses_a_run_of_another_dataset(world: ExplainedWorld) -> None:
    from types import SimpleNamespace

    from registry.explain_tables import ExplainTablesError, run_dataset, seen_items
    from training.data.load import load_dataset

    other = SimpleNamespace(data=SimpleNamespace(tags={"graphrec.input_files_fingerprint": "0123abcd"}, params={}))
    other.info = SimpleNamespace(run_id="r1")
    with pytest.raises(ExplainTablesError, match="GRAPHREC_DATASET"):
        run_dataset(world.settings, other)  # type: ignore[arg-type]
    unknown = SimpleNamespace(data=SimpleNamespace(tags={}, params={"seed": "3", "protocol": "weekly"}))
    unknown.info = SimpleNamespace(run_id="r2")
    with pytest.raises(ExplainTablesError, match="cannot replay its split"):
        seen_items(load_dataset(world.settings), unknown)  # type: ignore[arg-type]


def test_a_catalogue_that_does_not_match_its_digest_is_refused(world: ExplainedWorld) -> None:
    import json

    from mlflow import MlflowClient

    from serving.binding import ModelSource, NotServable
    from serving.contract import CATALOGUE_TAG

    name = world.settings.registered_model_name
    tags = MlflowClient(world.settings.mlflow_uri).get_model_version(name, world.kcan_version).tags
    digests = json.loads(tags[CATALOGUE_TAG])
    source = ModelSource(world.settings.mlflow_uri)
    assert len(source.catalogue(name, world.kcan_version, tags[CATALOGUE_TAG])) > 0
    tampered = json.dumps(digests | {"entities.parquet": "0" * 64})
    with pytest.raises(NotServable, match="entities.parquet does not match"):
        source.catalogue(name, world.kcan_version, tampered)
    with pytest.raises(NotServable, match="is not JSON"):
        source.catalogue(name, world.kcan_version, "{")


def test_predict_command_explain_flag_asks_for_and_prints_reasons(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from cli.main import app
    from serving.client import ServingClient
    from serving.schemas import ScoresResponse

    asked: list[bool] = []

    def predict(self: ServingClient, user_id: int, item_ids: list[int], explain: bool = False) -> ScoresResponse:
        asked.append(explain)
        body = {"user_id": user_id, "item_ids": item_ids, "explain": explain}
        return ScoresResponse.model_validate(client.post("/v1/predict", json=body).json())

    monkeypatch.setattr(ServingClient, "predict", predict)
    result = CliRunner().invoke(app, ["predict", "--user", "5", "--items", "0,1", "--explain"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert asked == [True]
    assert "user side" in result.stdout and "item side" in result.stdout and "(item, interact)" in result.stdout
    plain = CliRunner().invoke(app, ["predict", "--user", "5", "--items", "0,1"], env={"COLUMNS": "80"})
    assert asked == [True, False] and "user side" not in plain.stdout


def test_kcan_neighbour_ids_and_seen_items_are_published_as_int64_lists(world: ExplainedWorld) -> None:
    from feature_repo.model_views import load_manifest

    (kcan,) = (e for e in load_manifest(world.settings.work_dir) if e.version == int(world.kcan_version))
    assert kcan.user_features["kcan_nbr_id"] == kcan.item_features["kcan_nbr_id"] == "int64_list"
    assert kcan.seen_features[SEEN_FEATURE] == "int64_list"
