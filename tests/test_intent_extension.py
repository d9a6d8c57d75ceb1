"""The intent-topics extension (issue 12): θ_u as a user side feature of KCAN and BPR-MF, run by the evaluation
harness beside the model without it and reported per activity tercile."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from graphrec.settings import Settings
from registry.runs import side_input_digest
from registry.train import train_and_log
from tests.support.topics import tagged_dataset
from tests.test_models import assert_scorer_equals_model, small_config
from training.data.dataset import write_dataset
from training.data.load import load_dataset
from training.evaluation.harness import run_specs
from training.evaluation.report import extension_rows
from training.models.base import MODELS, Batch, TrainingData
from training.trainer import prepare_data, rows_as_tensors, seed_everything

pytestmark = pytest.mark.usefixtures("single_thread")
EXTENDED = ("bpr_mf", "kcan")


@pytest.fixture(scope="module")
def tagged_data() -> TrainingData:
    """A small tagged dataset's split, its θ fitted once for the module."""
    return prepare_data(tagged_dataset(n_users=40), seed=0)


def with_intent(name: str):
    return small_config(name).model_copy(update={"user_intent": True})


def test_intent_mixture_is_a_distribution_per_user_and_leaves_torch_seeding_alone(tagged_data: TrainingData) -> None:
    fresh = prepare_data(tagged_data.dataset, seed=0)
    torch.manual_seed(7)
    theta = fresh.user_intent
    after_fit = torch.rand(3)
    torch.manual_seed(7)
    assert torch.equal(after_fit, torch.rand(3))
    assert theta.shape == (tagged_data.dataset.n_users, 16) and theta.dtype == np.float32
    np.testing.assert_allclose(theta.sum(axis=1), 1.0, atol=1e-5)
    assert fresh.user_intent is theta  # fitted once per split


@pytest.mark.parametrize("name", EXTENDED)
def test_extension_starts_as_the_model_without_it(name: str, tagged_data: TrainingData) -> None:
    users, items, _ = rows_as_tensors(tagged_data.split.valid)
    predictions = []
    for config in (small_config(name), with_intent(name)):
        seed_everything(0)
        model = MODELS[name](config, tagged_data).eval()
        with torch.no_grad():
            predictions.append(model.predict_logits(users, items))
    torch.testing.assert_close(predictions[0], predictions[1])


@pytest.mark.parametrize("name", EXTENDED)
def test_extended_model_learns_from_intent_and_serves_exactly(name: str, tagged_data: TrainingData) -> None:
    seed_everything(0)
    model = MODELS[name](with_intent(name), tagged_data)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    batch = Batch(*rows_as_tensors(tagged_data.split.train))
    model.train()
    for _ in range(5):
        loss = model.training_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.intent_projection.weight.abs().sum() > 0  # θ reached the loss
    assert_scorer_equals_model(model, tagged_data)


def test_extensions_run_beside_the_full_model_under_its_config() -> None:
    configs = {"kcan": small_config("kcan")}
    specs = run_specs(["kcan", "popularity"], [0], configs, None, extensions=True)
    labels = [spec.key[0] for spec in specs]
    assert labels == ["kcan", "kcan + intent topics", "popularity"]
    extended = specs[1].config
    assert extended.user_intent and extended.model_copy(update={"user_intent": False}) == configs["kcan"]


def _run(ablation: str, seed: int, auc: float, sparse_auc: float) -> dict[str, object]:
    row: dict[str, object] = {"family": "bpr_mf", "ablation": ablation, "regime": "bpr", "seed": seed}
    for suffix, value in (("", auc), ("/sparse", sparse_auc), ("/medium", auc), ("/active", auc)):
        row[f"auc{suffix}"] = value
        row[f"recall@20{suffix}"] = value / 2
    return row


def test_extension_table_pairs_runs_by_seed_and_judges_against_the_spread_per_tercile() -> None:
    table = pd.DataFrame(
        [
            _run("", 0, 0.80, 0.70),
            _run("", 1, 0.82, 0.72),
            _run("with intent topics", 0, 0.805, 0.75),
            _run("with intent topics", 1, 0.825, 0.77),
            _run("no item bias", 0, 0.70, 0.60),
        ]
    )
    rows = {row[2]: row for row in extension_rows(table)}
    assert list(rows) == ["all", "sparse", "medium", "active"]
    assert rows["all"][:2] == ["bpr_mf (bpr)", "intent topics"]
    assert rows["all"][3] == "+0.0050 ± 0.0000" and rows["all"][5] == "0.0100" and rows["all"][6] == "within"
    assert rows["sparse"][3] == "+0.0500 ± 0.0000" and rows["sparse"][6] == "above"
    assert rows["sparse"][4] == "+0.0250 ± 0.0000"


def test_a_logged_run_records_the_mixture_its_features_bake_in(
    store_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    import mlflow

    write_dataset(tagged_dataset(n_users=40), tmp_path / "tagged")
    settings = store_settings(dataset=str(tmp_path / "tagged"))
    config = with_intent("bpr_mf").model_copy(update={"epochs": 2})
    outcome = train_and_log(settings, "bpr_mf", config, seed=0, topk_users=20, protocol="topk")
    run = mlflow.MlflowClient(settings.mlflow_uri).get_run(outcome.run_id)
    assert run.data.params["config.user_intent"] == "True"
    assert run.data.params["protocol"] == "topk"  # registration replays this split to publish the seen items
    local = mlflow.artifacts.download_artifacts(
        run_id=outcome.run_id, artifact_path="side_inputs/user_intent.parquet", dst_path=str(tmp_path / "got")
    )
    logged = np.stack(pd.read_parquet(local)["user_intent"].to_numpy())
    expected = prepare_data(load_dataset(settings), seed=0, protocol="topk").user_intent
    np.testing.assert_array_equal(logged, expected)
    assert run.data.tags["graphrec.side_input.user_intent.sha256"] == side_input_digest(expected)
