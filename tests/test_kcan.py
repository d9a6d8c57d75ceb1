"""KCAN: served scorer equals the model, no label leakage through the u–v edge, attention and ablations behave."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn.functional import cosine_similarity, normalize
from torch.utils._python_dispatch import TorchDispatchMode

from serving.scoring import build_scorer
from serving.scoring.kcan import Star, conditional_attention
from tests.support.datasets import synthetic_dataset
from tests.support.scoring import assert_scorer_equals_model, served_rows
from tests.support.steps import adam_losses
from training.kge.interactions import project
from training.models.base import Batch, TrainingData
from training.models.kcan import KCAN, KCANConfig
from training.models.kcan_layers import distill, knowledge_attention, leading_rows, relation_cosine
from training.trainer import fit, prepare_data, rows_as_tensors, seed_everything


@pytest.fixture(scope="module")
def data() -> TrainingData:
    """A smaller synthetic dataset than the shared one, with 2-7 liked items per user so stars are well filled."""
    return prepare_data(synthetic_dataset(n_users=30, n_items=24, n_attributes=8, positives=(2, 7)), seed=0)


def make(data: TrainingData, **overrides: object) -> KCAN:
    """A small seeded KCAN (dim 8, k 3 so stars are really distilled), briefly trained so weights are not at init."""
    seed_everything(0)
    settings = {"dim": 8, "top_k": 3, "max_neighbours": 50, "batch_size": 64} | overrides
    model = KCAN(KCANConfig(**settings), data)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    users, items, labels = rows_as_tensors(data.split.train)
    for _ in range(3):
        losses = model.training_loss(Batch(users, items, labels))
        # an alternating schedule's parts are computed lazily, each after the previous step
        for loss in (part() for part in losses) if isinstance(losses, tuple) else [losses]:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def positive_pairs(data: TrainingData) -> tuple[torch.Tensor, torch.Tensor]:
    positives = data.train_positives
    return torch.from_numpy(positives["user"].to_numpy()), torch.from_numpy(positives["item"].to_numpy())


SELECTING = {
    "loss": "bpr",
    "alpha_per_layer": True,
    "learn_temperature": True,
    "relation_prior": True,
    "attention": "gatv2",
    "personal_embeddings": True,
    "item_bias": True,
    "centre_dot": True,
    "transh_schedule": "alternating",
}
BILINEAR = {"loss": "bpr", "attention": "bilinear", "personal_embeddings": True, "item_bias": True, "centre_dot": True}
ABLATIONS = [
    {},
    {"knowledge_attention": False},
    {"conditional_attention": False},
    {"distillation": False},
    SELECTING,
    BILINEAR,
]
ABLATION_IDS = ["full", "no_knowledge", "no_conditional", "no_distillation", "selecting", "bilinear"]


@pytest.mark.parametrize("overrides", ABLATIONS, ids=ABLATION_IDS)
def test_scorer_on_exported_features_equals_predict_logits(data: TrainingData, overrides: dict) -> None:
    model = make(data, **overrides)
    export = model.export_serving()
    assert export.scorer_kind == "kcan"
    rows = pd.concat([data.split.train, data.split.valid])  # training positives: their edge must be masked at serving
    assert_scorer_equals_model(model, export, rows)


@pytest.mark.parametrize("overrides", ABLATIONS, ids=ABLATION_IDS)
def test_candidate_form_equals_the_pair_form(data: TrainingData, overrides: dict) -> None:
    """The service's one-user form over the whole cached catalogue (items prepared once, in shuffled order, some
    repeated) equals the per-pair scorer for every user, masking of the pair's own edge included."""
    model = make(data, **overrides)
    export = model.export_serving()
    scorer = build_scorer(export.scorer_kind, export.scorer_state)
    catalogue = np.random.default_rng(0).permutation(data.dataset.n_items)
    candidates = scorer.prepare(served_rows(export.item_features, "item_id", catalogue))
    positions = np.concatenate([np.arange(len(catalogue)), [0, 0, 3]])
    for user in range(data.dataset.n_users):
        user_row = served_rows(export.user_features, "user_id", np.array([user]))
        items = catalogue[positions]
        expected = scorer.score(
            served_rows(export.user_features, "user_id", np.full(len(items), user)),
            served_rows(export.item_features, "item_id", items),
        )
        np.testing.assert_allclose(candidates.score(user_row, positions), expected, atol=1e-5)


def test_exported_features_have_the_documented_shapes(data: TrainingData) -> None:
    model = make(data)
    export = model.export_serving()
    k, d = model.config.top_k, model.config.dim
    assert list(export.user_features["user_id"]) == list(range(data.dataset.n_users))
    assert list(export.item_features["item_id"]) == list(range(data.dataset.n_items))
    for frame in (export.user_features, export.item_features):
        row = frame.iloc[0]
        assert row["kcan_repr"].shape == (d,) and row["kcan_repr"].dtype == np.float32
        assert row["kcan_nbr_repr"].shape == (k * d,) and row["kcan_nbr_alpha"].shape == (k,)
        padding = np.stack(frame["kcan_nbr_id"].to_numpy()) < 0
        assert np.all(np.stack(frame["kcan_nbr_alpha"].to_numpy())[padding] == 0)


def test_target_edge_is_never_a_distilled_neighbour_of_its_pair(data: TrainingData) -> None:
    model = make(data, top_k=50)  # stars hold every neighbour, so the u–v edge is in them before masking
    users, items = positive_pairs(data)
    with torch.no_grad():
        propagation = model.propagate()
    user, item = model.user_star(propagation, users), model.item_star(propagation, items)
    assert (user.nbr_id == items.unsqueeze(1)).any(dim=1).all()  # the edge exists in the graph ...
    assert (item.nbr_id == user.node_id.unsqueeze(1)).any(dim=1).all()
    user_kept, item_kept = user.kept(item.node_id), item.kept(user.node_id)
    assert not (user_kept & (user.nbr_id == items.unsqueeze(1))).any()  # ... and is never kept for its own pair
    assert not (item_kept & (item.nbr_id == user.node_id.unsqueeze(1))).any()


def test_target_edge_content_cannot_change_its_score(data: TrainingData) -> None:
    """Scrambling the representation and α of v inside u's star (and u inside v's) leaves the (u, v) logit unchanged."""
    model = make(data, top_k=50)
    users, items = positive_pairs(data)
    export = model.export_serving()
    user_rows = served_rows(export.user_features, "user_id", users.numpy())
    item_rows = served_rows(export.item_features, "item_id", items.numpy())
    scorer = build_scorer("kcan", export.scorer_state)
    before = scorer.score(user_rows, item_rows)
    d = model.config.dim
    for rows, other in ((user_rows, items.numpy()), (item_rows, model.user_nodes(users).numpy())):
        target = rows["kcan_nbr_id"] == other[:, None]
        rows["kcan_nbr_alpha"] = np.where(target, 1e3, rows["kcan_nbr_alpha"]).astype(np.float32)
        expanded = np.repeat(target, d, axis=1)
        rows["kcan_nbr_repr"] = np.where(expanded, 1e3, rows["kcan_nbr_repr"]).astype(np.float32)
    np.testing.assert_array_equal(scorer.score(user_rows, item_rows), before)


def test_training_hides_the_batch_edges_from_propagation(data: TrainingData) -> None:
    model = make(data)
    users, items = positive_pairs(data)
    dropped = model.pair_edges(users[:5], items[:5])
    triples = data.ckg.triples[dropped.numpy()]
    user_nodes = set(model.user_nodes(users[:5]).tolist())
    assert len(triples) == 10  # interact and interacted_by of each pair
    assert {int(h) for h in triples[:, 0]} | {int(t) for t in triples[:, 2]} == user_nodes | set(items[:5].tolist())
    with torch.no_grad():
        alpha = model.propagate(dropped).alpha
    assert torch.all(alpha[dropped] == 0)


def in_edge_sums(model: KCAN, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _, dst = model.graph.edges()
    degree = torch.bincount(dst, minlength=model.graph.num_nodes())
    return torch.zeros(len(degree)).index_add_(0, dst, alpha), degree


def test_attention_sums_to_one_over_in_edges(data: TrainingData) -> None:
    model = make(data)
    with torch.no_grad():
        alpha = model.propagate().alpha
    sums, degree = in_edge_sums(model, alpha)
    assert torch.all(alpha > 0)
    torch.testing.assert_close(sums[degree > 0], torch.ones(int((degree > 0).sum())))


def test_relation_cosine_matches_the_direct_formula(data: TrainingData) -> None:
    model = make(data)
    graph, transh = model.graph, model.transh
    x, normals, translations = transh.entity.weight.detach(), transh.normal.weight.detach(), transh.translation.weight
    src, dst = graph.edges()
    rel = graph.edata["rel"]
    w = normalize(normals, dim=-1)[rel]
    direct = cosine_similarity(project(x[dst], w), project(x[src], w) + translations.detach()[rel], dim=-1)
    torch.testing.assert_close(relation_cosine(graph, x, normals, translations.detach()), direct, atol=1e-5, rtol=1e-4)


def test_knowledge_attention_off_is_uniform(data: TrainingData) -> None:
    model = make(data, knowledge_attention=False)
    with torch.no_grad():
        alpha = model.propagate().alpha
    _, dst = model.graph.edges()
    degree = torch.bincount(dst, minlength=model.graph.num_nodes())
    torch.testing.assert_close(alpha, 1.0 / degree[dst].float())
    transh = model.transh
    knowledge = knowledge_attention(
        model.graph, transh.entity.weight, transh.normal.weight, transh.translation.weight, 0.1
    )
    assert not torch.allclose(knowledge, alpha)


def test_distill_keeps_the_top_k_by_alpha_padded() -> None:
    src = torch.tensor([1, 2, 3, 4, 0, 2])
    dst = torch.tensor([0, 0, 0, 0, 1, 1])
    alpha = torch.tensor([0.1, 0.4, 0.3, 0.2, 0.7, 0.3])
    tables = distill(src, dst, alpha, n_nodes=3, k=3, tie_break=torch.arange(6))
    assert tables.node.tolist() == [[2, 3, 4], [0, 2, -1], [-1, -1, -1]]
    assert tables.edge.tolist() == [[1, 2, 3], [4, 5, -1], [-1, -1, -1]]
    torch.testing.assert_close(tables.alpha(alpha, torch.tensor([1])), torch.tensor([[0.7, 0.3, 0.0]]))


def pair_logits(model: KCAN, data: TrainingData) -> torch.Tensor:
    users, items, _ = rows_as_tensors(data.split.valid)
    with torch.no_grad():
        return model.predict_logits(users, items)


@pytest.mark.parametrize("switch", ["conditional_attention", "distillation"])
def test_ablation_switches_change_the_computation(data: TrainingData, switch: str) -> None:
    full = make(data)
    ablated = make(data)  # same seed, same training: identical weights
    ablated.config = full.config.model_copy(update={switch: False})
    assert not torch.allclose(pair_logits(full, data), pair_logits(ablated, data))


def test_distillation_off_keeps_every_neighbour(data: TrainingData) -> None:
    model = make(data, distillation=False)
    with torch.no_grad():
        neighbourhoods = model.propagate().neighbourhoods
    _, dst = model.graph.edges()
    degree = torch.bincount(dst, minlength=model.graph.num_nodes())
    assert neighbourhoods.node.shape[1] == model.config.max_neighbours
    assert torch.equal((neighbourhoods.node >= 0).sum(dim=1), degree.clamp_max(model.config.max_neighbours))


def test_loss_is_finite_and_decreases(data: TrainingData) -> None:
    seed_everything(0)
    model = KCAN(KCANConfig(dim=8, top_k=3, dropout=0.0), data)
    batch = Batch(*rows_as_tensors(data.split.train))

    def loss() -> torch.Tensor:
        torch.manual_seed(0)  # same TransH batch each step
        return model.training_loss(batch)

    losses = adam_losses(model, loss)
    assert losses[-1] < losses[0]


class ShapeRecorder(TorchDispatchMode):
    """Records every aten op called (with its arguments) and the shape of every tensor an op returns."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []
        self.calls: list[tuple[object, tuple]] = []

    def __torch_dispatch__(
        self, func: Callable[..., object], types: object, args: tuple = (), kwargs: dict | None = None
    ) -> object:
        out = func(*args, **(kwargs or {}))
        self.calls.append((func, args))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor):
                self.shapes.append(tuple(tensor.shape))
        return out


def test_a_training_step_never_builds_a_dense_node_by_node_tensor(data: TrainingData) -> None:
    model = make(data)
    users, items, labels = rows_as_tensors(data.split.train)
    n_nodes = model.graph.num_nodes()
    with ShapeRecorder() as recorder:
        model.train()
        model.training_loss(Batch(users, items, labels)).backward()
    assert len(recorder.shapes) > 100
    assert not [shape for shape in recorder.shapes if sum(size == n_nodes for size in shape) >= 2]


def random_star(generator: torch.Generator, batch: int, k: int, d: int) -> Star:
    """A star batch with every neighbour real."""
    return Star(
        node_id=torch.arange(batch),
        centre=torch.randn(batch, d, generator=generator),
        nbr_id=torch.arange(batch * k).reshape(batch, k) + batch,
        nbr_repr=torch.randn(batch, k, d, generator=generator),
        nbr_alpha=torch.full((batch, k), 1.0 / k),
    )


def test_only_gatv2_attention_ranks_neighbours_differently_per_target() -> None:
    generator = torch.Generator().manual_seed(0)
    d, k, targets = 8, 6, 32
    star = random_star(generator, 1, k, d)
    star = Star(
        star.node_id.repeat(targets),
        star.centre.repeat(targets, 1),
        star.nbr_id.repeat(targets, 1),
        star.nbr_repr.repeat(targets, 1, 1),
        star.nbr_alpha.repeat(targets, 1),
    )
    h_user, h_item = torch.randn(targets, d, generator=generator), torch.randn(targets, d, generator=generator)
    kept = torch.ones(targets, k, dtype=torch.bool)
    static = conditional_attention(star, h_user, h_item, torch.randn(4 * d, generator=generator), kept)
    transform = torch.randn(d, 4 * d, generator=generator)
    dynamic = conditional_attention(star, h_user, h_item, torch.randn(d, generator=generator), kept, transform)
    assert len({tuple(row) for row in static.argsort(dim=1).tolist()}) == 1  # one ranking for every target
    assert len({tuple(row) for row in dynamic.argsort(dim=1).tolist()}) > 1
    torch.testing.assert_close(dynamic.sum(dim=1), torch.ones(targets))


def test_bilinear_attention_at_init_weighs_the_neighbour_most_like_the_target(data: TrainingData) -> None:
    """As initialised, the bilinear form's query is the target item and its keys the neighbours: for a target equal to
    one neighbour's representation, that neighbour gets the largest β (up to the small initial noise)."""
    seed_everything(0)
    model = KCAN(KCANConfig(dim=8, top_k=3, attention="bilinear"), data)
    generator = torch.Generator().manual_seed(1)
    star = random_star(generator, 6, 6, 8)
    star = Star(star.node_id, star.centre, star.nbr_id, 3.0 * normalize(star.nbr_repr, dim=-1), star.nbr_alpha)
    chosen = torch.arange(6)  # row b's target is a copy of its neighbour b
    h_item = star.nbr_repr[torch.arange(6), chosen]
    kept = torch.ones(6, 6, dtype=torch.bool)
    head = model.head_weights()
    beta = conditional_attention(
        star, star.centre, h_item, head.attention, kept, head.attention_transform, head.bilinear
    )
    assert head.bilinear and torch.equal(beta.argmax(dim=1), chosen)
    torch.testing.assert_close(beta.sum(dim=1), torch.ones(6))


def test_alpha_is_shared_or_recomputed_per_layer(data: TrainingData) -> None:
    shared, per_layer = make(data), make(data, alpha_per_layer=True)
    with torch.no_grad():
        shared_alphas, per_layer_alphas = shared.propagate().alphas, per_layer.propagate().alphas
    assert len(shared_alphas) == len(per_layer_alphas) == shared.config.n_layers
    assert shared_alphas[0] is shared_alphas[1]
    assert not torch.allclose(per_layer_alphas[0], per_layer_alphas[1])


@pytest.mark.parametrize("learn", [False, True])
def test_temperature_learns_only_when_asked(data: TrainingData, learn: bool) -> None:
    model = make(data, learn_temperature=learn).train()
    users, items, labels = rows_as_tensors(data.split.train)
    model.training_loss(Batch(users, items, labels)).backward()
    assert (model.log_temperature.grad is not None) == learn


def test_kcan_diagnostics_cover_every_stage(data: TrainingData) -> None:
    found = make(data, alpha_per_layer=True, attention="gatv2").diagnostics(data)
    for layer in (1, 2):
        assert 0.0 <= found[f"attention/layer{layer}/entropy_mean"] <= 1.0
        assert found[f"attention/layer{layer}/max_ratio_median"] >= 1.0
    assert 0.0 <= found["distill/share_cut"] <= 1.0 and 0.0 < found["distill/mass_kept"] <= 1.0
    assert 0.0 < found["conditioning/sensitivity"] < 1.0
    assert {"personal/item_share", "personal/top20_jaccard", "personal/coverage"} <= set(found)
    static = make(data, conditional_attention=False).diagnostics(data)
    assert static["conditioning/sensitivity"] == pytest.approx(0.0, abs=1e-12)
    assert make(data, attention="bilinear").diagnostics(data)["conditioning/sensitivity"] > 1e-4
    for side in ("user", "item"):
        assert 0.0 < found[f"conditioning/beta_entropy_{side}"] <= 1.0
        assert f"conditioning/beta_entropy_{side}" not in static  # no β to measure


def test_logit_parts_add_up_to_the_models_logits(data: TrainingData) -> None:
    model = make(data, **BILINEAR)
    with torch.no_grad():
        propagation = model.propagate()
        user, item = model.sample_stars(propagation)
        parts = model.logit_parts(user, item)
        users = user.node_id - model.n_entities  # the user nodes' indices
        torch.testing.assert_close(sum(parts.values()), model.predict_logits(users, item.node_id))
    assert set(parts) == {"towers", "centre_dot", "item_bias"}
    shares = {key: value for key, value in model.diagnostics(data).items() if key.startswith("logit/")}
    assert set(shares) == {"logit/towers_share", "logit/centre_dot_share", "logit/item_bias_share"}
    assert sum(shares.values()) == pytest.approx(1.0)


def test_eval_predictions_reuse_one_propagation_until_training_resumes(data: TrainingData) -> None:
    model = make(data)
    users, items, labels = rows_as_tensors(data.split.train)
    with torch.no_grad():
        first = model.predict_logits(users, items)
        torch.testing.assert_close(model.predict_logits(users, items), first)
        torch.testing.assert_close(model.eval().predict_logits(users, items), first)  # eval() recomputes it
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    model.training_loss(Batch(users, items, labels)).backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        assert not torch.allclose(model.predict_logits(users, items), first)


@pytest.mark.parametrize("overrides", [{}, {"distillation": False}], ids=["distilled", "undistilled"])
def test_predictions_in_star_slot_chunks_equal_one_pass(
    data: TrainingData, overrides: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bounding pairs × star size per chunk (memory) changes no logit, with or without gradients."""
    model = make(data, **overrides)
    users, items, _ = rows_as_tensors(data.split.train)
    with torch.no_grad():
        whole = model.predict_logits(users, items)
    monkeypatch.setattr("training.models.kcan.PREDICT_STAR_SLOTS", model.star_size * 7)  # chunks of 7 pairs
    assert len(users) > 7
    with torch.no_grad():
        torch.testing.assert_close(model.eval().predict_logits(users, items), whole)
    torch.testing.assert_close(model.predict_logits(users, items).detach(), whole)  # grad enabled: fresh propagation


def test_a_relation_prior_shifts_attention_towards_its_relation(data: TrainingData) -> None:
    model = make(data, relation_prior=True)
    assert model.relation_prior is not None
    rel, (_, dst) = model.graph.edata["rel"], model.graph.edges()
    kinds = {}  # node -> the relations of its in-edges
    for node, relation in zip(dst.tolist(), rel.tolist(), strict=True):
        kinds.setdefault(node, set()).add(relation)
    mixed_node = next(node for node, relations in kinds.items() if len(relations) > 1)
    favoured = min(kinds[mixed_node])
    edges = (dst == mixed_node) & (rel == favoured)  # the favoured relation's edges into a node with other relations
    with torch.no_grad():
        before = model.propagate().alpha
        model.relation_prior[favoured] = 5.0
        model.eval()  # forget the cached propagation
        after = model.propagate().alpha
    assert torch.all(after[edges] > before[edges])
    sums, degree = in_edge_sums(model, after)
    torch.testing.assert_close(sums[degree > 0], torch.ones(int((degree > 0).sum())))


def test_alternating_schedule_steps_twice_and_keeps_batch_positives_out_of_transh(
    data: TrainingData, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_everything(0)
    model = KCAN(KCANConfig(dim=8, top_k=3, transh_schedule="alternating", transh_batch_size=4096), data)
    drawn: list[torch.Tensor] = []
    transh_loss = model.transh.loss

    def recording_loss(positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        drawn.append(positives)
        return transh_loss(positives, negatives)

    monkeypatch.setattr(model.transh, "loss", recording_loss)
    users, items = positive_pairs(data)
    parts = model.training_loss(Batch(users[:20], items[:20], torch.ones(20)))
    assert isinstance(parts, tuple) and len(parts) == 2
    assert torch.isfinite(parts[0]()) and not drawn  # the recommendation step draws no triple
    assert torch.isfinite(parts[1]()) and len(drawn) == 1
    batch_edges = model.pair_edges(users[:20], items[:20])
    held = {tuple(t) for t in model.triples[batch_edges].tolist()}
    assert len(held) == 40  # both directions of 20 pairs
    assert not held & {tuple(t) for t in drawn[0].tolist()}
    assert len(drawn[0]) < 4096  # draws of those edges were dropped, not redrawn
    result = fit("kcan", data, KCANConfig(dim=8, top_k=3, transh_schedule="alternating", epochs=2), seed=0)
    assert len(result.history) == 2 and all(np.isfinite(r.train_loss) for r in result.history)


def test_leading_rows_share_views_whose_backward_fills_each_size_once() -> None:
    """The block-source table's leading parts are views of it with its gradient, and the backward builds a zero
    gradient once per size (cut from the next larger view), not the whole table's at every use."""
    x = torch.randn(10, 3, requires_grad=True)
    views = leading_rows(x, [10, 6, 6, 3])
    assert views[10] is x
    for n in (6, 3):
        torch.testing.assert_close(views[n], x[:n])
    with ShapeRecorder() as recorder:
        (2 * views[6].sum() + views[3].sum() + views[6].sum() + views[10].sum()).backward()
    expected = torch.ones(10, 3)
    expected[:6] += 3
    expected[:3] += 1
    torch.testing.assert_close(x.grad, expected)
    # slice_backward(grad, input_sizes, ...): the shape of the zero gradient it builds
    sizes = [tuple(args[1]) for func, args in recorder.calls if func is torch.ops.aten.slice_backward.default]
    assert sorted(sizes) == [(6, 3), (10, 3)]
