"""Every registered recommender: trains (finite, decreasing loss) and its serving scorer equals predict_logits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from serving.scoring import build_scorer
from training.data.dataset import Dataset
from training.models.base import MODELS, Batch, TrainingData, load_models
from training.trainer import prepare_data, resolve_config, rows_as_tensors, seed_everything

load_models()


def synthetic_dataset(n_users: int = 40, n_items: int = 30, n_attributes: int = 12, seed: int = 0) -> Dataset:
    """Users who like items of 'their' genre (an attribute entity), 1:1 sampled negatives, 2 KG relations."""
    rng = np.random.default_rng(seed)
    genre = rng.integers(0, 4, n_items)
    taste = rng.integers(0, 4, n_users)
    rows = []
    for user in range(n_users):
        liked = np.flatnonzero(genre == taste[user])
        positives = rng.choice(liked, size=min(len(liked), rng.integers(1, 7)), replace=False)
        negatives = rng.choice(np.setdiff1d(np.arange(n_items), positives), size=len(positives), replace=False)
        rows += [(user, i, 1) for i in positives] + [(user, i, 0) for i in negatives]
    interactions = pd.DataFrame(rows, columns=["user", "item", "label"])
    interactions["timestamp"] = 1_700_000_000
    heads = np.r_[np.arange(n_items), np.arange(n_items)]
    tails = np.r_[n_items + genre, n_items + 4 + rng.integers(0, n_attributes - 4, n_items)]
    kg = pd.DataFrame({"head": heads, "relation": np.repeat([0, 1], n_items), "tail": tails})
    return Dataset(
        name="synthetic",
        n_users=n_users,
        n_items=n_items,
        n_entities=n_items + n_attributes,
        n_relations=2,
        interactions=interactions,
        kg=kg,
        social=pd.DataFrame({"user": [0, 1], "friend": [1, 2]}),
        relation_names=["genre", "label"],
    )


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny models run far faster on one thread (multi-threaded small ops stall on a busy CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return prepare_data(synthetic_dataset(), seed=0)


def small_config(name: str):
    """The model's defaults, shrunk so a few steps run in milliseconds."""
    config = resolve_config(name, None)
    return type(config).model_validate(config.model_dump() | {"dim": 8, "batch_size": 64, "lr": 0.01})


def feature_rows(frame: pd.DataFrame, id_column: str, ids: np.ndarray) -> dict[str, np.ndarray]:
    """The served rows of ``ids`` as the scorer receives them: scalars 1-D, array features stacked 2-D."""
    rows = frame.set_index(id_column).loc[ids]
    return {column: np.stack(rows[column].to_numpy()) for column in rows.columns}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_trains_and_serves(name: str, data: TrainingData) -> None:
    seed_everything(0)
    model = MODELS[name](small_config(name), data)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    users, items, labels = rows_as_tensors(data.split.train)
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
    pair_users = np.repeat(np.arange(data.dataset.n_users), 3)
    pair_items = np.random.default_rng(1).integers(0, data.dataset.n_items, len(pair_users))
    with torch.no_grad():
        expected = model.predict_logits(torch.from_numpy(pair_users), torch.from_numpy(pair_items)).numpy()
    export = model.export_serving()
    scorer = build_scorer(export.scorer_kind, export.scorer_state)
    got = scorer.score(
        feature_rows(export.user_features, "user_id", pair_users),
        feature_rows(export.item_features, "item_id", pair_items),
    )
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
