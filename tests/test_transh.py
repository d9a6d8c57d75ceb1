"""TransH: interaction maths, Bernoulli negatives, twin-aware split, filtered ranking, seeded training, constraints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.kge.evaluate import evaluate, rank_triples, realistic_ranks
from training.kge.interactions import distance_to_all, project, transh_distance
from training.kge.sampling import BernoulliSampler, head_corruption_probability
from training.kge.split import naive_leak_share, pair_groups, twin_aware_split, twin_share
from training.kge.train import TransHConfig, fit
from training.kge.transh import TransH, margin_loss

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models: two torch threads mostly wait on each other


def planted_kg(n_clusters: int = 6, per_cluster: int = 10) -> tuple[np.ndarray, int, int]:
    """Items in clusters; a cluster fixes each item's genre, label and country; items also link to a clustermate.

    Relations: 0 genre, 1 label, 2 country (item -> attribute), 3 similar (item -> next item in its cluster).
    Returns (triples, n_nodes, n_relations).
    """
    n_items = n_clusters * per_cluster
    items = np.arange(n_items)
    cluster = items // per_cluster
    rows = [np.stack((items, np.full(n_items, rel), n_items + rel * n_clusters + cluster), axis=1) for rel in range(3)]
    mate = cluster * per_cluster + (items % per_cluster + 1) % per_cluster
    rows.append(np.stack((items, np.full(n_items, 3), mate), axis=1))
    return np.concatenate(rows).astype(np.int64), n_items + 3 * n_clusters, 4


def test_transh_distance_matches_hand_computation() -> None:
    h, t = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])
    w, d = torch.tensor([0.6, 0.8, 0.0]), torch.tensor([0.0, 0.0, 0.5])
    # P(h) = h - 0.6 w = (0.64, -0.48, 0); P(t) = t; P(h) + d - P(t) = (0.64, -0.48, -0.5)
    assert transh_distance(h, w, d, t).item() == pytest.approx(0.64**2 + 0.48**2 + 0.5**2)


def test_projection_is_orthogonal_to_the_normal_and_idempotent() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 16, generator=gen, dtype=torch.float64)
    w = torch.nn.functional.normalize(torch.randn(32, 16, generator=gen, dtype=torch.float64), dim=-1)
    projected = project(x, w)
    assert torch.allclose((projected * w).sum(-1), torch.zeros(32, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(project(projected, w), projected, atol=1e-12)


def test_distance_broadcasts_and_all_entity_scoring_agrees() -> None:
    gen = torch.Generator().manual_seed(1)
    b, k, n, dim = 5, 7, 11, 8
    entities = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    w = torch.nn.functional.normalize(torch.randn(b, dim, generator=gen, dtype=torch.float64), dim=-1)
    d = torch.randn(b, dim, generator=gen, dtype=torch.float64)
    h = entities[:b]
    many = transh_distance(h[:, None], w[:, None], d[:, None], entities[None, :k])
    one_by_one = torch.stack([transh_distance(h, w, d, entities[j].expand(b, dim)) for j in range(k)], dim=1)
    assert many.shape == (b, k) and torch.allclose(many, one_by_one)
    tails = distance_to_all(project(h, w) + d, w, entities)
    assert torch.allclose(tails, transh_distance(h[:, None], w[:, None], d[:, None], entities[None]), atol=1e-10)
    heads = distance_to_all(project(h, w) - d, w, entities)  # h plays the tail here
    assert torch.allclose(heads, transh_distance(entities[None], w[:, None], d[:, None], h[:, None]), atol=1e-10)


def test_margin_loss_by_hand() -> None:
    pos, neg = torch.tensor([0.5, 2.0]), torch.tensor([[1.0, 3.5], [0.0, 4.0]])
    # relu(1 + pos - neg): [[0.5, 0], [3, 0]]
    assert margin_loss(pos, neg, margin=1.0).item() == pytest.approx(3.5 / 4)


def test_bernoulli_corrupts_heads_of_one_to_many_relations() -> None:
    one_to_many = [(0, 0, t) for t in range(1, 11)]  # head 0 has 10 tails: tph 10, hpt 1
    many_to_one = [(h, 1, 20) for h in range(11, 16)]  # tail 20 has 5 heads: tph 1, hpt 5
    triples = np.array(one_to_many + many_to_one, dtype=np.int64)
    assert np.allclose(head_corruption_probability(triples, 2), [10 / 11, 1 / 6])
    sampler = BernoulliSampler(triples, n_nodes=21, n_relations=2, num_negatives=4, seed=0)
    pos = torch.from_numpy(np.repeat(triples[[0, -1]], 2000, axis=0))
    neg = sampler.sample(pos)
    assert neg.shape == (4000, 4, 3)
    head_changed, tail_changed = neg[..., 0] != pos[:, None, 0], neg[..., 2] != pos[:, None, 2]
    assert torch.equal(head_changed ^ tail_changed, torch.ones_like(head_changed))  # exactly one side, never a no-op
    assert torch.equal(neg[..., 1], pos[:, None, 1].expand(-1, 4))
    assert head_changed[:2000].float().mean().item() == pytest.approx(10 / 11, abs=0.02)
    assert head_changed[2000:].float().mean().item() == pytest.approx(1 / 6, abs=0.02)
    again = BernoulliSampler(triples, n_nodes=21, n_relations=2, num_negatives=4, seed=0).sample(pos)
    assert torch.equal(neg, again)


def _twin_kg(n: int = 400, seed: int = 0) -> np.ndarray:
    """Random KG where about half the triples have a twin (reverse or other relation on the same pair)."""
    rng = np.random.default_rng(seed)
    base = np.stack((rng.integers(0, 60, n), rng.integers(0, 3, n), rng.integers(60, 200, n)), axis=1)
    twins = base[: n // 2][:, [2, 1, 0]] + np.array([0, 3, 0])  # reversed direction, relation r + 3
    return np.unique(np.concatenate((base, twins)), axis=0).astype(np.int64)


@pytest.mark.parametrize("cover_train", [True, False])
def test_split_keeps_twins_together_and_is_seeded(cover_train: bool) -> None:
    triples = _twin_kg()
    split = twin_aware_split(triples, seed=3, cover_train=cover_train)
    parts = (split.train, split.valid, split.test)
    assert sum(len(p) for p in parts) == len(triples)
    assert len(np.unique(split.triples, axis=0)) == len(triples)
    side = np.repeat([0, 1, 2], [len(p) for p in parts])
    groups = pair_groups(split.triples)
    sides_per_group = np.unique(np.stack((groups, side), axis=1), axis=0)[:, 0]
    assert len(sides_per_group) == len(np.unique(groups))  # every pair group lies on exactly one side
    again = twin_aware_split(triples, seed=3, cover_train=cover_train)
    assert np.array_equal(split.test, again.test) and np.array_equal(split.valid, again.valid)
    assert not np.array_equal(split.test, twin_aware_split(triples, seed=4, cover_train=cover_train).test)
    seen = set(split.train[:, [0, 2]].ravel())
    held_out_entities = set(np.concatenate((split.valid, split.test))[:, [0, 2]].ravel())
    if cover_train:
        assert held_out_entities <= seen and len(split.test) > 0
    else:
        assert np.allclose([len(p) / len(triples) for p in parts], [0.8, 0.1, 0.1], atol=0.02)


def test_twin_and_naive_leak_shares() -> None:
    triples = np.array([[0, 0, 1], [1, 1, 0], [0, 2, 1], [2, 0, 3], [4, 0, 5]], dtype=np.int64)
    assert twin_share(triples) == pytest.approx(3 / 5)
    assert naive_leak_share(_twin_kg(), seed=0) > 0.2  # a row split leaks twins into train
    with pytest.raises(ValueError, match="sum to 1"):
        twin_aware_split(triples, ratios=(0.5, 0.2, 0.2))


def _hand_model() -> TransH:
    """dim 2, one relation with normal (0, 1) and translation (1, 0): distance = (x_h + 1 - x_t)²."""
    model = TransH(n_nodes=5, n_relations=1, dim=2)
    with torch.no_grad():
        model.entity.weight.copy_(torch.tensor([[0.0, 5.0], [1.0, -3.0], [2.0, 0.5], [3.0, 0.0], [2.0, -1.0]]))
        model.normal.weight.copy_(torch.tensor([[0.0, 1.0]]))
        model.translation.weight.copy_(torch.tensor([[1.0, 0.0]]))
    return model


def test_filtered_ranks_on_a_hand_made_case() -> None:
    model = _hand_model()
    test = np.array([[0, 0, 2]], dtype=np.int64)
    known = np.array([[0, 0, 1], [0, 0, 2]], dtype=np.int64)
    # tail query (0, r, ?): distances e0..e4 = 1, 0, 1, 4, 1; e1 is a known answer (filtered), e2 the target;
    # ties e0, e4 -> realistic rank 1 + 0 + 2/2 = 2 (unfiltered it would be 3).
    # head query (?, r, 2): distances e0..e4 = 1, 0, 1, 4, 1; nothing else known; e1 better, e2 and e4 tie -> 3.
    heads, tails = rank_triples(model, test, known)
    assert heads.tolist() == [3.0] and tails.tolist() == [2.0]
    metrics = evaluate(model, test, known)
    assert metrics["mrr"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert metrics["hits@1"] == 0.0 and metrics["hits@3"] == 1.0
    assert realistic_ranks(torch.zeros(1, 4), torch.zeros(1)).item() == 3.0  # all tied: mean of 1 and 5


def test_training_lowers_loss_and_ranks_held_out_triples_far_above_random() -> None:
    triples, n_nodes, n_relations = planted_kg()
    rng = np.random.default_rng(0)
    held_out = rng.choice(np.flatnonzero(triples[:, 1] == 0), size=10, replace=False)  # genre triples
    train = np.delete(triples, held_out, axis=0)
    config = TransHConfig(dim=16, epochs=60, batch_size=64, lr=0.02, num_negatives=4)
    model, history = fit(train, n_nodes, n_relations, config)
    assert history[-1]["loss"] < 0.2 * history[0]["loss"]
    metrics = evaluate(model, triples[held_out], triples)
    random_mrr = np.mean(1.0 / np.arange(1, n_nodes + 1))  # about 0.063 here
    assert metrics["mrr"] > 8 * random_mrr and metrics["hits@10"] >= 0.9


def test_training_is_deterministic_and_keeps_the_constraints() -> None:
    triples, n_nodes, n_relations = planted_kg()
    config = TransHConfig(dim=16, epochs=20, batch_size=64, lr=0.02, seed=5)
    first, history = fit(triples, n_nodes, n_relations, config)
    second, again = fit(triples, n_nodes, n_relations, config)
    assert [r["loss"] for r in history] == [r["loss"] for r in again]
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert torch.allclose(first.normal.weight.norm(dim=-1), torch.ones(n_relations), atol=1e-5)
    assert first.entity.weight.norm(dim=-1).max().item() < 1.05


def test_early_stopping_restores_the_best_validation_weights() -> None:
    triples, n_nodes, n_relations = planted_kg()
    valid, train = triples[::10], np.delete(triples, np.s_[::10], axis=0)
    config = TransHConfig(dim=16, epochs=200, batch_size=64, lr=0.02, eval_every=5, patience=2)
    model, history = fit(train, n_nodes, n_relations, config, valid=valid)
    scores = [r["valid_mrr"] for r in history if "valid_mrr" in r]
    best = int(np.argmax(scores))
    assert len(history) == 200 or len(scores) - 1 - best == config.patience  # stopped `patience` checks after the best
    assert evaluate(model, valid, np.concatenate((train, valid)))["mrr"] == pytest.approx(max(scores))


def test_real_lastfm_kg_short_run(real_data_dir: Path) -> None:
    triples = np.loadtxt(real_data_dir / "lastfm-kg" / "kg_final.txt", dtype=np.int64)
    assert twin_share(triples) == pytest.approx(0.7295, abs=1e-3)
    split = twin_aware_split(triples, seed=0)
    config = TransHConfig(epochs=15)
    model, history = fit(split.train, int(triples[:, [0, 2]].max()) + 1, int(triples[:, 1].max()) + 1, config)
    assert history[-1]["loss"] < history[0]["loss"]
    assert evaluate(model, split.test, split.triples)["mrr"] > 0.02  # random guessing: about 0.001


def test_ranking_against_the_leading_candidates_leaves_out_the_other_nodes() -> None:
    """With ``n_candidates`` (the KG entities of a collaborative KG) the nodes after them never compete: the hand-made
    case's e3 and e4 are left out, so the tail query's ties shrink and its rank improves; a known answer among the
    left-out nodes is simply ignored."""
    model = _hand_model()
    test = np.array([[0, 0, 2]], dtype=np.int64)
    known = np.array([[0, 0, 1], [0, 0, 2], [0, 0, 4]], dtype=np.int64)
    heads, tails = rank_triples(model, test, known, n_candidates=3)
    # tail query: distances e0..e2 = 1, 0, 1; e1 filtered; e0 ties with the target -> 1 + 0 + 1/2
    # head query (target e0 at distance 1): e1 better, e2 ties -> 1 + 1 + 1/2 (e4, which also ties, is left out)
    assert tails.tolist() == [1.5] and heads.tolist() == [2.5]
    full_heads, _ = rank_triples(model, test, known)
    assert full_heads.tolist() == [3.0]  # e4 ties too when every node competes
