"""Sampled mini-batch KCAN (issue 16): a step over DGL blocks equals the full-graph step when every neighbour is
taken, the stars stay exact under sampling, it trains, and it exports the same serving form."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from tests.support.datasets import synthetic_dataset
from tests.support.scoring import assert_scorer_equals_model
from tests.support.steps import adam_losses
from tests.test_kcan import make
from training.models.base import Batch, TrainingData
from training.models.kcan import KCAN, KCANConfig
from training.models.kcan_sampling import propagation_blocks
from training.models.optimizers import SparseRowsAdam
from training.trainer import fit, prepare_data, rows_as_tensors, seed_everything

SAMPLED = {"propagation": "sampled", "fanouts": [3, 2]}


@pytest.fixture(scope="module")
def data() -> TrainingData:
    """The dataset of tests/test_kcan.py: 2-7 liked items per user, so stars are well filled."""
    return prepare_data(synthetic_dataset(n_users=30, n_items=24, n_attributes=8, positives=(2, 7)), seed=0)


def step_loss(model: KCAN, batch: Batch) -> torch.Tensor:
    """One training loss with torch's generator reset, so TransH triples and sampled negatives are the same draw."""
    torch.manual_seed(1)
    return model.training_loss(batch)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"loss": "bpr", "relation_prior": True, "attention": "gatv2", "personal_embeddings": True, "item_bias": True},
        {"knowledge_attention": False, "centre_dot": True},
        {"distillation": False},
    ],
    ids=["default", "selecting", "no_knowledge", "no_distillation"],
)
def test_every_neighbour_sampled_equals_the_full_graph_step(data: TrainingData, overrides: dict) -> None:
    """With fanouts of -1 the blocks hold every in-edge: the recommendation loss and every parameter's gradient equal
    the full-graph step's on the same batch (the batch's own edges hidden in both; the TransH term, the same in both
    modes, is left out because drawing the neighbour sample advances torch's generator before its triples)."""
    seed_everything(0)
    config = KCANConfig(dim=8, top_k=3, dropout=0.0, **overrides)
    model = KCAN(config, data).train()
    users, items, labels = rows_as_tensors(data.split.train)
    batch = Batch(users[:48], items[:48], labels[:48])
    positive = batch.labels > 0
    hidden = model.pair_edges(batch.users[positive], batch.items[positive])
    gradients = []
    for propagation in ("full", "sampled"):
        model.config = config.model_copy(update={"propagation": propagation, "fanouts": [-1, -1]})
        model.zero_grad()
        torch.manual_seed(1)  # the same sampled negatives (loss="bpr")
        loss = model.recommendation_loss(batch, hidden)
        loss.backward()
        gradients.append(
            (float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        )
    (full_loss, full_grads), (sampled_loss, sampled_grads) = gradients
    assert sampled_loss == pytest.approx(full_loss, abs=1e-6)
    assert full_grads.keys() == sampled_grads.keys() and "transh.entity.weight" in full_grads
    assert full_grads["transh.entity.weight"].abs().max() > 0
    for name, gradient in full_grads.items():
        torch.testing.assert_close(sampled_grads[name], gradient, atol=1e-6, rtol=1e-5, msg=name)


def test_stars_are_exact_and_layers_sampled(data: TrainingData) -> None:
    """Under small fanouts a seed's star (kept neighbours and their α) is the full graph's, while the propagation
    layers hold at most ``fanouts[l]`` in-edges per node."""
    model = make(data, **SAMPLED).train()
    seeds = torch.cat((model.user_nodes(torch.arange(10)), torch.arange(10)))
    with torch.no_grad():
        full, sampled = model.propagate(), model.propagate_sampled(seeds)
    exact, local = full.star(sampled.seeds), sampled.star(sampled.seeds)
    assert torch.equal(local.nbr_id, exact.nbr_id)
    torch.testing.assert_close(local.nbr_alpha, exact.nbr_alpha)
    blocks = propagation_blocks(model.graph, sampled.nodes, SAMPLED["fanouts"])
    for fanout, block in zip(SAMPLED["fanouts"], blocks, strict=True):  # block l is layer l, drawn with fanouts[l]
        assert int(block.in_degrees().max()) <= fanout
    assert len(sampled.nodes) < model.graph.num_nodes()  # a batch's step does not touch every node


def test_a_star_fanout_distils_among_a_sample_of_in_edges(data: TrainingData) -> None:
    """With ``star_fanout`` 2 a star holds at most 2 neighbours, all true in-neighbours, with α summing to 1."""
    model = make(data, star_fanout=2, **SAMPLED).train()
    seeds = torch.cat((model.user_nodes(torch.arange(10)), torch.arange(10)))
    with torch.no_grad():
        star = model.propagate_sampled(seeds).star(torch.unique(seeds))
    src, dst = model.graph.edges()
    edges = set(zip(src.tolist(), dst.tolist(), strict=True))
    kept = star.nbr_id >= 0
    assert int(kept.sum(dim=1).max()) == 2 and not kept[:, 2:].any()
    assert all(
        (int(n), int(c)) in edges
        for n, c in zip(star.nbr_id[kept], star.node_id.repeat_interleave(kept.sum(1)), strict=True)
    )
    torch.testing.assert_close(star.nbr_alpha.sum(dim=1), torch.ones(len(star.node_id)))


def test_sampled_training_lowers_the_loss(data: TrainingData) -> None:
    seed_everything(0)
    model = KCAN(KCANConfig(dim=8, top_k=3, dropout=0.0, **SAMPLED), data).train()
    batch = Batch(*rows_as_tensors(data.split.train))
    losses = adam_losses(model, lambda: step_loss(model, batch))  # same triples and neighbour samples every step
    assert losses[-1] < losses[0]


def test_a_sampled_model_exports_the_same_serving_form(data: TrainingData) -> None:
    """Trained by sampled steps, the model still exports the kcan features and scorer; the scorer equals
    predict_logits (a full-graph propagation) on training and validation pairs."""
    model = make(data, **SAMPLED)
    export = model.export_serving()
    assert export.scorer_kind == "kcan"
    reference = make(data).export_serving()
    assert list(export.user_features.columns) == list(reference.user_features.columns)
    assert list(export.item_features.columns) == list(reference.item_features.columns)
    rows = pd.concat([data.split.train, data.split.valid])
    assert_scorer_equals_model(model, export, rows)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"fanouts": [5]}, "one fanout per layer"),
        ({"fanouts": [5, 0]}, "positive count or -1"),
        ({"alpha_per_layer": True}, "alpha_per_layer=false"),
        ({"star_fanout": 0}, "star_fanout 0 must be"),
    ],
)
def test_inconsistent_sampling_settings_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KCANConfig(**(SAMPLED | overrides))


SPARSE = SAMPLED | {"sparse_embeddings": True}


def test_sparse_rows_carry_the_dense_gradient_of_a_sampled_step(data: TrainingData) -> None:
    """With ``sparse_embeddings`` the node tables get sparse row gradients that, densified, equal the dense sampled
    step's on the same batch and draws; every other parameter's gradient is unchanged."""
    users, items, labels = rows_as_tensors(data.split.train)
    batch = Batch(users[:48], items[:48], labels[:48])
    gradients = []
    for sparse in (False, True):
        seed_everything(0)
        config = KCANConfig(dim=8, top_k=3, dropout=0.0, personal_embeddings=True, item_bias=True, **SAMPLED)
        model = KCAN(config.model_copy(update={"sparse_embeddings": sparse}), data).train()
        step_loss(model, batch).backward()
        gradients.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    dense, sparse = gradients
    assert dense.keys() == sparse.keys()
    for table in ("transh.entity.weight", "personal.weight", "item_bias.weight"):
        assert sparse[table].is_sparse and not dense[table].is_sparse
    for name, gradient in dense.items():
        torch.testing.assert_close(sparse[name].to_dense(), gradient, atol=1e-6, rtol=1e-5, msg=name)


def test_a_sparse_step_moves_only_the_rows_it_touched(data: TrainingData) -> None:
    """One step on a 2-row batch: exactly the entity rows in the step's gradient move (the sampled nodes and the
    TransH triples), the others keep their values (dense Adam's weight decay would move every row); dense parameters
    are stepped too."""
    seed_everything(0)
    config = KCANConfig(dim=8, top_k=3, weight_decay=1e-2, transh_batch_size=4, star_fanout=2, **SPARSE)
    model = KCAN(config.model_copy(update={"fanouts": [1, 1]}), data).train()
    optimizer = model.make_optimizer()
    assert isinstance(optimizer, SparseRowsAdam)
    entity, refine = model.transh.entity.weight.detach().clone(), model.refine.weight.detach().clone()
    users, items, labels = rows_as_tensors(data.split.train)
    optimizer.zero_grad()
    step_loss(model, Batch(users[:2], items[:2], labels[:2])).backward()
    touched = model.transh.entity.weight.grad.coalesce().indices()[0]
    optimizer.step()
    moved = torch.nonzero((model.transh.entity.weight.detach() != entity).any(dim=1)).squeeze(1)
    assert 0 < len(touched) < len(entity)
    assert torch.equal(moved, touched)
    assert not torch.equal(model.refine.weight.detach(), refine)


def test_a_sparse_sampled_model_trains_and_its_scorer_equals_the_model(data: TrainingData) -> None:
    """Trained by the trainer with sparse rows (SparseAdam + Adam), the exported kcan scorer equals predict_logits
    (a full-graph propagation) on training and validation pairs."""
    config = KCANConfig(dim=8, top_k=3, batch_size=64, epochs=2, item_bias=True, **SPARSE)
    result = fit("kcan", data, config, seed=0)
    assert all(np.isfinite(record.train_loss) for record in result.history)
    model, export = result.model, result.model.export_serving()
    rows = pd.concat([data.split.train, data.split.valid])
    assert_scorer_equals_model(model, export, rows)


def test_sparse_rows_need_sampled_propagation() -> None:
    with pytest.raises(ValidationError, match="sparse_embeddings needs propagation='sampled'"):
        KCANConfig(sparse_embeddings=True)
