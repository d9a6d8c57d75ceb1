"""Every registered recommender: trains (finite, decreasing loss) under both regimes and its serving scorer equals
predict_logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from serving.scoring import build_scorer, prepare_candidates
from tests.support.scoring import served_rows
from training.models.base import MODELS, Batch, Recommender, TrainingData, load_models
from training.trainer import fit, resolve_config, rows_as_tensors, seed_everything

load_models()
pytestmark = pytest.mark.usefixtures("single_thread")


def small_config(name: str):
    """The model's defaults, shrunk so a few steps run in milliseconds."""
    config = resolve_config(name, None)
    return type(config).model_validate(config.model_dump() | {"dim": 8, "batch_size": 64, "lr": 0.01})


def trainable(name: str, data: TrainingData) -> bool:
    """Whether the model has parameters to learn (popularity has none and is only served)."""
    return any(p.requires_grad for p in MODELS[name](small_config(name), data).parameters())


def assert_scorer_equals_model(model: Recommender, data: TrainingData) -> None:
    """The serving scorer built from the model's export gives its predict_logits on random pairs (atol 1e-5), in both
    forms: per pair, and one user against many items of a prepared item table (the service's hot path)."""
    model.eval()
    pair_users = np.repeat(np.arange(data.dataset.n_users), 3)
    pair_items = np.random.default_rng(1).integers(0, data.dataset.n_items, len(pair_users))
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
    every_item = served_rows(export.item_features, "item_id", np.arange(data.dataset.n_items))
    candidates = prepare_candidates(scorer, every_item)
    for user in np.unique(pair_users):
        own = pair_users == user
        user_row = served_rows(export.user_features, "user_id", np.array([user]))
        np.testing.assert_allclose(candidates.score(user_row, pair_items[own]), expected[own], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_trains_and_serves(name: str, training_data: TrainingData) -> None:
    seed_everything(0)
    model = MODELS[name](small_config(name), training_data)
    if not trainable(name, training_data):
        assert_scorer_equals_model(model, training_data)
        return
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
    assert_scorer_equals_model(model, training_data)


@pytest.mark.parametrize("name", sorted(n for n in MODELS if n != "popularity"))
def test_every_model_trains_one_step_under_both_regimes(name: str, training_data: TrainingData) -> None:
    """BCE on labelled rows and BPR against sampled items: the same switch (``loss``) for every trainable model,
    wired to the loss (same weights and batch, different value)."""
    losses = {}
    for regime in ("bce", "bpr"):
        config = small_config(name)
        config = type(config).model_validate(config.model_dump() | {"loss": regime})
        seed_everything(0)
        model = MODELS[name](config, training_data)
        model.train()
        model.on_epoch_start(1)
        loss = model.training_loss(Batch(*rows_as_tensors(training_data.split.train)))
        assert torch.isfinite(loss), f"{name} {regime}: loss {loss}"
        loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
        losses[regime] = float(loss.detach())
    assert losses["bce"] != pytest.approx(losses["bpr"], rel=1e-6), f"{name}: the regime changes nothing {losses}"


def test_only_the_parameterless_popularity_model_skips_training(training_data: TrainingData) -> None:
    assert [name for name in sorted(MODELS) if not trainable(name, training_data)] == ["popularity"]


def test_popularity_is_monotone_in_training_counts_and_trains_zero_epochs(training_data: TrainingData) -> None:
    counts = np.bincount(training_data.train_positives["item"], minlength=training_data.dataset.n_items)
    result = fit("popularity", training_data)
    items = torch.arange(training_data.dataset.n_items)
    logits = result.model.predict_logits(torch.zeros_like(items), items).numpy()
    order = np.argsort(counts, kind="stable")
    assert len(np.unique(counts)) > 2, "the fixture must have items of several popularities"
    assert np.all(np.diff(logits[order]) >= 0)
    assert np.all((np.diff(logits[order]) > 0) == (np.diff(counts[order]) > 0))
    other_user = result.model.predict_logits(torch.full_like(items, 3), items).numpy()
    np.testing.assert_array_equal(logits, other_user)
    assert result.history == [] and result.best_epoch == 0
    assert set(result.diagnostics) == {"personal/item_share", "personal/top20_jaccard", "personal/coverage"}
    # the same item scores for everyone; not exactly 1 because each user's excluded positives shift the user mean
    assert result.diagnostics["personal/item_share"] > 0.95
