"""Every registered recommender: trains (finite, decreasing loss) and its serving scorer equals predict_logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from serving.scoring import build_scorer
from tests.support.scoring import served_rows
from training.models.base import MODELS, Batch, TrainingData, load_models
from training.trainer import resolve_config, rows_as_tensors, seed_everything

load_models()
pytestmark = pytest.mark.usefixtures("single_thread")


def small_config(name: str):
    """The model's defaults, shrunk so a few steps run in milliseconds."""
    config = resolve_config(name, None)
    return type(config).model_validate(config.model_dump() | {"dim": 8, "batch_size": 64, "lr": 0.01})


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_trains_and_serves(name: str, training_data: TrainingData) -> None:
    seed_everything(0)
    model = MODELS[name](small_config(name), training_data)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    users, items, labels = rows_as_tensors(training_data.split.train)
    batch = Batch(users, items, labels)
    losses = []
    model.train()
    for epoch in range(1, 7):
        model.on_epoch_start(epoch)
        seed_everything(0)  # same sampled negatives at every step: the loss must go down on the same batch
        loss = model.training_loss(batch)
        assert torch.isfinite(loss), f"{name}: loss {loss}"
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    seed_everything(0)
    assert min(losses[1:]) < losses[0], f"{name}: losses did not decrease: {losses}"

    model.eval()
    pair_users = np.repeat(np.arange(training_data.dataset.n_users), 3)
    pair_items = np.random.default_rng(1).integers(0, training_data.dataset.n_items, len(pair_users))
    with torch.no_grad():
        expected = model.predict_logits(torch.from_numpy(pair_users), torch.from_numpy(pair_items)).numpy()
    export = model.export_serving()
    scorer = build_scorer(export.scorer_kind, export.scorer_state)
    got = scorer.score(
        served_rows(export.user_features, "user_id", pair_users),
        served_rows(export.item_features, "item_id", pair_items),
    )
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
