"""KCAN (Tu et al., "Conditional Graph Attention Networks for Distilling and Refining Knowledge Graphs in
Recommendation", CIKM 2021), following the formulation of docs/ARCHITECTURE.md §3.

1. The shared TransH layer (:mod:`training.kge`) embeds every CKG node; its margin loss with Bernoulli negatives on a
   random batch of CKG triples is added to every step: L = L_rec + λ·L_TransH (joint training).
2. Knowledge-aware attention α and propagation (KAGCN) over the whole CKG, recomputed at every step with gradients
   (it costs a few milliseconds on Last.FM, and lets the recommendation loss shape TransH and α).
3. Distillation: per node, the top-k in-neighbours by α; for a scored pair (u, v) the u–v edge is masked out of both
   stars, in training, prediction and serving alike.
4-5. Conditional attention and two towers: :func:`serving.scoring.kcan.kcan_logits`, the code the served scorer runs.

Ablations: ``knowledge_attention`` off → uniform α (and top-k a seeded random subset); ``conditional_attention`` off →
the distilled star is aggregated with α alone (no target-conditioned β); ``distillation`` off → every neighbour up to
``max_neighbours``. L2 is Adam's ``weight_decay``.

With ``hide_target_edges`` (training only), a batch's own u–v edges also carry no message in that step's propagation,
so a training positive is scored as a validation pair is — without its edge — instead of the towers learning to
detect an edge that held-out pairs never have. Prediction and serving use the full training graph.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from serving.scoring.kcan import HeadWeights, Star, kcan_logits
from training.kge.sampling import BernoulliSampler
from training.kge.transh import TransH
from training.models.base import Batch, ModelConfig, Recommender, ServingExport, TrainingData, register_model
from training.models.kcan_layers import KAGCN, Neighbourhoods, distill, knowledge_attention


class KCANConfig(ModelConfig):
    """KCAN hyper-parameters (defaults chosen on the Last.FM validation split)."""

    n_layers: int = 2
    top_k: int = 16
    max_neighbours: int = 128  # star size when distillation is off
    temperature: float = 0.5  # τ of the knowledge-aware softmax
    gamma: float = 0.5  # share of the conditional attention β in the mixed weights γβ + (1-γ)α
    transh_weight: float = 3.0  # λ
    transh_batch_size: int = 1024
    transh_margin: float = 1.0
    dropout: float = 0.3  # tower inputs
    message_dropout: float = 0.0  # KAGCN messages
    knowledge_attention: bool = True
    conditional_attention: bool = True
    distillation: bool = True
    hide_target_edges: bool = True  # training: a batch's own u–v edges are left out of that step's propagation
    lr: float = 5e-3
    weight_decay: float = 1e-4
    batch_size: int = 2048


def _tower(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(2 * dim, dim), nn.Linear(dim, dim))


def _layers(module: nn.Sequential) -> list[tuple[Tensor, Tensor]]:
    return [(layer.weight, layer.bias) for layer in module if isinstance(layer, nn.Linear)]


@register_model
class KCAN(Recommender):
    """Knowledge-aware attention over the CKG, top-k distillation, conditional attention and two towers."""

    name = "kcan"
    Config = KCANConfig
    config: KCANConfig
    triples: Tensor  # (T, 3) CKG triples, the TransH training set
    tie_break: Tensor  # (E,) fixed random ranks: top-k among equal α
    edge_order: Tensor  # (E,) edge ids sorted by src·N + dst
    edge_keys: Tensor  # (E,) the sorted src·N + dst keys

    def __init__(self, config: KCANConfig, data: TrainingData):
        super().__init__(config, data)
        ckg = data.ckg
        self.n_entities, self.n_users, self.n_items = ckg.n_entities, ckg.n_users, ckg.n_items
        self.graph = ckg.to_dgl()
        self.register_buffer("triples", torch.from_numpy(ckg.triples), persistent=False)
        self.register_buffer("tie_break", torch.randperm(self.graph.num_edges()))
        src, dst = self.graph.edges()
        keys = src * self.graph.num_nodes() + dst
        self.register_buffer("edge_order", torch.argsort(keys), persistent=False)
        self.register_buffer("edge_keys", keys[self.edge_order], persistent=False)
        self.transh = TransH(ckg.n_nodes, ckg.n_relations, config.dim, margin=config.transh_margin)
        self.sampler = BernoulliSampler(ckg.triples, ckg.n_nodes, ckg.n_relations, seed=torch.initial_seed() % 2**63)
        self.kagcn = KAGCN(config.dim, config.n_layers)
        self.attention = nn.Parameter(torch.randn(4 * config.dim) / (4 * config.dim) ** 0.5)
        self.refine = nn.Linear(config.dim, config.dim, bias=False)
        self.user_tower, self.item_tower = _tower(config.dim), _tower(config.dim)
        self.bias = nn.Parameter(torch.zeros(()))

    def propagate(self, dropped: Tensor | None = None) -> tuple[Tensor, Tensor, Neighbourhoods]:
        """Steps 1-3 over the whole CKG: KAGCN representations (N, d), α (E,), and the distilled neighbourhoods.

        Edges in the bool mask ``dropped`` (E,) get α = 0 (they carry no message).
        """
        config = self.config
        x = self.transh.entity.weight
        alpha = knowledge_attention(
            self.graph,
            x,
            self.transh.normal.weight,
            self.transh.translation.weight,
            config.temperature,
            config.knowledge_attention,
            dropped,
        )
        z = self.kagcn(self.graph, x, alpha, config.message_dropout)
        src, dst = self.graph.edges()
        return z, alpha, distill(src, dst, alpha, self.graph.num_nodes(), self.star_size, self.tie_break)

    def pair_edges(self, users: Tensor, items: Tensor) -> Tensor:
        """Bool mask (E,) of the CKG edges joining any (user, item) pair, both directions (training positives only)."""
        user_nodes, n_nodes = self.user_nodes(users), self.graph.num_nodes()
        queries = torch.cat((user_nodes * n_nodes + items, items * n_nodes + user_nodes))
        position = torch.searchsorted(self.edge_keys, queries).clamp_max(len(self.edge_keys) - 1)
        hit = self.edge_keys[position] == queries
        mask = torch.zeros(len(self.edge_keys), dtype=torch.bool)
        mask[self.edge_order[position[hit]]] = True
        return mask

    @property
    def star_size(self) -> int:
        """Neighbours kept per node: ``top_k`` when distilling, else ``max_neighbours``."""
        return self.config.top_k if self.config.distillation else self.config.max_neighbours

    def user_nodes(self, users: Tensor) -> Tensor:
        """CKG node ids of user indices."""
        return users + self.n_entities

    def head_weights(self) -> HeadWeights:
        """The parameters of steps 4-5 in the scorer's form."""
        return HeadWeights(
            attention=self.attention,
            refine=self.refine.weight,
            user_tower=_layers(self.user_tower),
            item_tower=_layers(self.item_tower),
            bias=self.bias,
        )

    @staticmethod
    def star(z: Tensor, alpha: Tensor, neighbourhoods: Neighbourhoods, nodes: Tensor) -> Star:
        """The distilled stars of ``nodes`` (B,), before the target edge is masked (the scorer masks it)."""
        return Star(
            node_id=nodes,
            centre=z[nodes],
            nbr_id=neighbourhoods.node[nodes],
            nbr_repr=neighbourhoods.repr(z, nodes),
            nbr_alpha=neighbourhoods.alpha(alpha, nodes),
        )

    def _logits(self, users: Tensor, items: Tensor, dropped: Tensor | None = None) -> Tensor:
        z, alpha, neighbourhoods = self.propagate(dropped)
        user = self.star(z, alpha, neighbourhoods, self.user_nodes(users))
        item = self.star(z, alpha, neighbourhoods, items)
        return kcan_logits(
            user,
            item,
            self.head_weights(),
            self.config.gamma,
            self.config.conditional_attention,
            self.config.dropout,
            self.training,
        )

    def training_loss(self, batch: Batch) -> Tensor:
        """BCE on the labelled rows + λ × TransH margin loss on a uniformly drawn batch of CKG triples."""
        self.transh.renormalize_()
        dropped = self.pair_edges(batch.users, batch.items) if self.config.hide_target_edges else None
        logits = self._logits(batch.users, batch.items, dropped)
        rec_loss = F.binary_cross_entropy_with_logits(logits, batch.labels.float())
        positives = self.triples[torch.randint(0, len(self.triples), (self.config.transh_batch_size,))]
        transh_loss = self.transh.loss(positives, self.sampler.sample(positives))
        return rec_loss + self.config.transh_weight * transh_loss

    def predict_logits(self, users: Tensor, items: Tensor) -> Tensor:
        """Logits of aligned pairs (the u–v edge masked out of both stars)."""
        return self._logits(users, items)

    @torch.no_grad()
    def export_serving(self) -> ServingExport:
        """Per-user and per-item KCAN features (representation + distilled star) and the ``kcan`` scorer's state."""
        was_training = self.training
        self.eval()
        try:
            z, alpha, neighbourhoods = self.propagate()
            users = _feature_frame(self.star(z, alpha, neighbourhoods, self.user_nodes(torch.arange(self.n_users))))
            items = _feature_frame(self.star(z, alpha, neighbourhoods, torch.arange(self.n_items)))
        finally:
            self.train(was_training)
        head = self.head_weights()
        numpy = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
        state: dict[str, object] = {
            "attention": numpy(head.attention),
            "refine": numpy(head.refine),
            "user_tower": [(numpy(w), numpy(b)) for w, b in head.user_tower],
            "item_tower": [(numpy(w), numpy(b)) for w, b in head.item_tower],
            "bias": float(head.bias),
            "gamma": self.config.gamma,
            "conditional": self.config.conditional_attention,
        }
        return ServingExport(
            user_features=users.rename_axis("user_id").reset_index(),
            item_features=items.rename_axis("item_id").reset_index(),
            scorer_kind="kcan",
            scorer_state=state,
        )


def _feature_frame(star: Star) -> pd.DataFrame:
    """One row per centre: node id, representation, flattened neighbour representations, α and ids."""
    rows = len(star.node_id)
    return pd.DataFrame(
        {
            "kcan_node_id": star.node_id.numpy(),
            "kcan_repr": list(star.centre.numpy().astype(np.float32)),
            "kcan_nbr_repr": list(star.nbr_repr.reshape(rows, -1).numpy().astype(np.float32)),
            "kcan_nbr_alpha": list(star.nbr_alpha.numpy().astype(np.float32)),
            "kcan_nbr_id": list(star.nbr_id.numpy()),
        }
    )
