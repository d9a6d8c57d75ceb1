"""CD-GNN as a platform citizen (issue 13, item 5), the CI smoke test: a tiny two-domain synthetic set, CD-GNN fitted
for the coupon domain, logged and registered through registry/ (per-version views, feature service, seen items,
catalogue), its registered scorer equal to the model at atol 1e-5, promoted through the gate on the frozen rows of its
domain, and one request served by it through the real app."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from graphrec.settings import Settings
from registry.crossdomain import DomainOutcome

TARGET = "coupon"


@dataclass(frozen=True)
class CrossDomainWorld:
    """Settings of the world and the registered CD-GNN version with its fit."""

    settings: Settings
    outcome: DomainOutcome


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, single_thread: None) -> CrossDomainWorld:
    from registry.crossdomain import train_and_log_domain
    from registry.tracking import configure_mlflow
    from training.synth.crossdomain import cross_domain_config
    from training.synth.generator import generate_dataset

    root = tmp_path_factory.mktemp("cdplatform")
    generate_dataset(cross_domain_config(160, seed=3, n_items=120), root / "data")
    settings = Settings(
        work_dir=root / "work", dataset=str(root / "data"), seed=3, registered_model_name="graphrec-cdgnn-coupon"
    )
    configure_mlflow(settings)
    outcome = train_and_log_domain(
        settings, TARGET, epochs=2, register_version=True, batch_size=256, dim=8, align_batch=64
    )
    return CrossDomainWorld(settings, outcome)


def _model_logits(world: CrossDomainWorld, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    from training.crossdomain.platform import domain_logits

    fit = world.outcome.fit
    return domain_logits(fit.model, fit.model.task, fit.target, pd.DataFrame({"user": users, "item": items}))


def test_version_is_registered_with_its_domain_and_features(world: CrossDomainWorld) -> None:
    from mlflow import MlflowClient

    from registry.servability import servability_problems
    from serving.contract import DOMAIN_TAG, MODEL_KIND_TAG, SEEN_VIEW_TAG

    version = world.outcome.version
    assert version is not None
    tags = MlflowClient().get_model_version(version.name, version.version).tags
    assert tags[DOMAIN_TAG] == TARGET and tags[MODEL_KIND_TAG] == "cdgnn" and SEEN_VIEW_TAG in tags
    assert servability_problems(world.settings, version.name, version.version) == []
    assert 0.0 <= world.outcome.run.test["auc"] <= 1.0 and world.outcome.fit.best_epoch in (1, 2)


def test_registered_scorer_equals_the_model(world: CrossDomainWorld) -> None:
    """The registered pyfunc, verified and scoring from the version's published feature tables, equals the model's
    target-domain logits, users cold in the target (served from their source view) included."""
    import mlflow
    from mlflow import MlflowClient

    from registry.evaluation import score_pairs, version_feature_tables
    from serving.model_integrity import load_verified_model
    from serving.pyfunc_model import ITEM_ID, USER_ID

    version = world.outcome.version
    assert version is not None
    task = world.outcome.fit.model.task
    model = load_verified_model(MlflowClient(), mlflow.get_tracking_uri(), version.name, str(version.version))
    users, items = version_feature_tables(world.settings, version.name, str(version.version))
    assert set(items.index) == set(task.items[1])  # the coupon catalogue only: the domain is fixed per version
    cold = np.flatnonzero(~task.has_train[1] & task.has_train[0])
    assert len(cold) > 0
    rng = np.random.default_rng(0)
    pair_users = np.concatenate([rng.integers(0, task.n_users, 60), cold[:40]])
    pair_items = task.items[1][rng.integers(0, len(task.items[1]), len(pair_users))]
    served = score_pairs(model, users, items, pd.DataFrame({USER_ID: pair_users, ITEM_ID: pair_items}))
    np.testing.assert_allclose(served, _model_logits(world, pair_users, pair_items), atol=1e-5)


def test_promoted_through_the_gate_and_served(world: CrossDomainWorld) -> None:
    """The gate scores the version on the frozen rows of its domain (the model's own AUC there); then one
    /v1/recommend request is answered by it, with coupon items only, at the model's scores."""
    from fastapi.testclient import TestClient
    from sklearn.metrics import roc_auc_score

    from registry.evaluation import frozen_eval_set, rows_of_domain
    from registry.promotion import promote
    from serving.app import create_app
    from serving.contract import CHAMPION

    version = world.outcome.version
    assert version is not None
    entry = promote(world.settings, version.name, str(version.version), CHAMPION)
    assert entry is not None and entry.gate["domain"] == TARGET
    rows = rows_of_domain(frozen_eval_set(world.settings)[0], TARGET)
    logits = _model_logits(world, rows["user_id"].to_numpy(), rows["item_id"].to_numpy())
    expected = roc_auc_score(rows["label"], logits)
    assert entry.gate["candidate"] == pytest.approx(expected, abs=1e-5)

    user = int(world.outcome.fit.model.task.test[1][0, 0])
    with TestClient(create_app(world.settings, poll=False), raise_server_exceptions=False) as client:
        response = client.post("/v1/recommend", json={"user_id": user, "k": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["version"] == str(version.version) and body["fallback"] is None
    items = np.array([s["item_id"] for s in body["scores"]])
    assert len(items) == 5 and set(items) <= set(world.outcome.fit.model.task.items[1])
    scores = np.array([s["score"] for s in body["scores"]])
    np.testing.assert_allclose(scores, _model_logits(world, np.full(len(items), user), items), atol=1e-5)


def test_an_unknown_target_domain_is_named(world: CrossDomainWorld) -> None:
    from registry.crossdomain import train_and_log_domain

    with pytest.raises(ValueError, match="no domain 'books'; its domains are fund, coupon"):
        train_and_log_domain(world.settings, "books")


def test_frozen_rows_of_a_domain_and_their_errors() -> None:
    from registry.evaluation import rows_of_domain

    rows = pd.DataFrame({"user_id": [0, 1, 2], "item_id": [5, 6, 7], "label": [1, 0, 1], "domain": ["a", "b", "a"]})
    assert rows_of_domain(rows, None) is rows
    assert rows_of_domain(rows, "a")["item_id"].tolist() == [5, 7]
    with pytest.raises(LookupError, match="no rows of domain 'c'; its domains: a, b"):
        rows_of_domain(rows, "c")
    with pytest.raises(LookupError, match="predates per-domain rows"):
        rows_of_domain(rows.drop(columns="domain"), "a")


def test_cli_registers_another_domain_which_the_gate_will_not_compare(world: CrossDomainWorld) -> None:
    """`graphrec crossdomain train --register` on the same model name, for the fund domain: registered with its own
    domain tag, and refused as champion over the coupon version (different rows), not scored against it."""
    from typer.testing import CliRunner

    from cli.main import app
    from registry.promotion import PromotionRefused, promote
    from serving.contract import CHAMPION

    settings, version = world.settings, world.outcome.version
    assert version is not None
    promote(settings, version.name, str(version.version), CHAMPION)  # a no-op when already champion
    global_options = ["--work-dir", str(settings.work_dir), "--dataset", settings.dataset]
    args = ["crossdomain", "train", "--target", "fund", "--epochs", "1", "--batch-size", "256", "--dim", "8"]
    env = {"GRAPHREC_REGISTERED_MODEL_NAME": version.name, "GRAPHREC_SEED": "3"}
    result = CliRunner().invoke(app, [*global_options, *args, "--register", "--json"], env=env)
    assert result.exit_code == 0, result.output
    fund = str(json.loads(result.stdout)["version"])
    with pytest.raises(PromotionRefused, match="scores domain 'fund' only but champion v1 scores domain 'coupon'"):
        promote(settings, version.name, fund, CHAMPION)
