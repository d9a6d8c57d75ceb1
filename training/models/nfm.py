"""NFM (He & Chua, "Neural Factorization Machines for Sparse Predictive Analytics", SIGIR 2017).

Feature fields: user id (one-hot), item id (one-hot) and the item's KG attributes (the entities adjacent to the item
in the KG, a multi-valued field whose weights sum to 1, capped at ``max_attributes`` in KG file order). Prediction
= w0 + Σ w_i x_i + hᵀ MLP(f_BI), with bi-interaction pooling f_BI = ½[(Σ x_i v_i)² - Σ (x_i v_i)²], dropout on f_BI
and in the MLP. Trained pointwise with BCE on the labelled rows (``loss="bce"``, default: the paper's log loss
variant) or with BPR against uniformly sampled items (``loss="bpr"``, the helper BPR-MF, CKE, KGAT and KCAN share).

Serving: the sums split exactly into a user part and an item part, so the exported features are, per user and item,
``fm_sum`` = Σ x_i v_i, ``fm_square`` = Σ (x_i v_i)² and ``fm_bias`` = Σ x_i w_i; the ``nfm`` scorer recombines them.
Simplified: no batch normalisation (it would only fold into the MLP at inference).
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from serving.scoring.embedding import nfm_logits
from training.models.base import Batch, ModelConfig, Recommender, ServingExport, TrainingData, register_model
from training.models.bpr_mf import LossKind, embedding_frame, recommendation_loss


class NFMConfig(ModelConfig):
    """NFM hyper-parameters: untuned first choices near the paper's (one hidden layer, dropout); Last.FM validation
    AUC 0.808 (seed 2021)."""

    loss: LossKind = "bce"
    hidden: list[int] = [64]
    dropout: float = 0.3
    max_attributes: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-5


def item_attributes(kg: np.ndarray, n_items: int, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_items, cap) padded attribute entity ids (pad = -1) and weights 1/|attributes| of each item's KG neighbours."""
    pairs = np.concatenate([kg[:, [0, 2]], kg[:, [2, 0]]])
    pairs = pairs[(pairs[:, 0] < n_items) & (pairs[:, 1] >= n_items)]  # item -> non-item neighbour
    pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
    first = np.searchsorted(pairs[:, 0], pairs[:, 0], side="left")
    rank = np.arange(len(pairs)) - first
    pairs, rank = pairs[rank < cap], rank[rank < cap]
    ids = np.full((n_items, cap), -1, dtype=np.int64)
    ids[pairs[:, 0], rank] = pairs[:, 1]
    count = (ids >= 0).sum(axis=1, keepdims=True)
    weights = np.where(ids >= 0, 1.0 / np.maximum(count, 1), 0.0).astype(np.float32)
    return ids, weights


@register_model
class NFM(Recommender):
    """Bi-interaction pooling of user, item and item-attribute fields, then an MLP."""

    name = "nfm"
    Config = NFMConfig
    config: NFMConfig

    def __init__(self, config: NFMConfig, data: TrainingData):
        super().__init__(config, data)
        dataset = data.dataset
        self.n_users, self.n_items = dataset.n_users, dataset.n_items
        kg = dataset.kg[["head", "relation", "tail"]].to_numpy(dtype=np.int64)
        ids, weights = item_attributes(kg, dataset.n_items, config.max_attributes)
        # feature index: entities 0..n_entities-1 (item ids and attributes), users after them, padding last
        self.user_offset, self.n_features = dataset.n_entities, dataset.n_entities + dataset.n_users
        self.register_buffer("attr_ids", torch.from_numpy(np.where(ids >= 0, ids, self.n_features)), persistent=False)
        self.register_buffer("attr_weights", torch.from_numpy(weights), persistent=False)
        self.factor = nn.Embedding(self.n_features + 1, config.dim, padding_idx=self.n_features)
        self.linear = nn.Embedding(self.n_features + 1, 1, padding_idx=self.n_features)
        nn.init.normal_(self.factor.weight[:-1], std=0.01)
        nn.init.zeros_(self.linear.weight)
        self.global_bias = nn.Parameter(torch.zeros(()))
        sizes = [config.dim, *config.hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(sizes))
        self.head = nn.Parameter(torch.randn(sizes[-1]) * 0.01)

    def _user_part(self, users: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        index = users + self.user_offset
        v = self.factor(index)
        return v, v * v, self.linear(index).squeeze(-1)

    def _item_part(self, items: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = torch.cat([torch.ones(len(items), 1), self.attr_weights[items]], dim=1)
        index = torch.cat([items.unsqueeze(1), self.attr_ids[items]], dim=1)
        xv = x.unsqueeze(-1) * self.factor(index)
        return xv.sum(dim=1), (xv * xv).sum(dim=1), (x * self.linear(index).squeeze(-1)).sum(dim=1)

    def _logits(self, users: Tensor, items: Tensor, dropout: float) -> Tensor:
        user_sum, user_square, user_bias = self._user_part(users)
        item_sum, item_square, item_bias = self._item_part(items)
        if dropout == 0.0:
            return nfm_logits(
                user_sum,
                user_square,
                user_bias,
                item_sum,
                item_square,
                item_bias,
                [layer.weight for layer in self.layers],
                [layer.bias for layer in self.layers],
                self.head,
                self.global_bias,
            )
        total = user_sum + item_sum
        hidden = F.dropout(0.5 * (total * total - (user_square + item_square)), dropout)
        for layer in self.layers:
            hidden = F.dropout(F.relu(layer(hidden)), dropout)
        return self.global_bias + user_bias + item_bias + hidden @ self.head

    def training_loss(self, batch: Batch) -> Tensor:
        """BCE on the labelled rows (or BPR on sampled negatives), with dropout."""
        dropout = self.config.dropout if self.training else 0.0
        return recommendation_loss(
            self.config.loss, lambda users, items: self._logits(users, items, dropout), batch, self.n_items
        )

    def predict_logits(self, users: Tensor, items: Tensor) -> Tensor:
        """NFM logit without dropout (the ``nfm`` scorer's formula)."""
        return self._logits(users, items, 0.0)

    @torch.no_grad()
    def export_serving(self) -> ServingExport:
        """Per-user and per-item ``fm_sum``, ``fm_square``, ``fm_bias``; MLP weights in the scorer state."""
        user_sum, user_square, user_bias = self._user_part(torch.arange(self.n_users))
        item_sum, item_square, item_bias = self._item_part(torch.arange(self.n_items))
        return ServingExport(
            user_features=embedding_frame(
                "user_id",
                np.arange(self.n_users),
                fm_sum=user_sum.numpy(),
                fm_square=user_square.numpy(),
                fm_bias=user_bias.numpy(),
            ),
            item_features=embedding_frame(
                "item_id",
                np.arange(self.n_items),
                fm_sum=item_sum.numpy(),
                fm_square=item_square.numpy(),
                fm_bias=item_bias.numpy(),
            ),
            scorer_kind="nfm",
            scorer_state={
                "weights": [layer.weight.numpy().copy() for layer in self.layers],
                "biases": [layer.bias.numpy().copy() for layer in self.layers],
                "head": self.head.numpy().copy(),
                "global_bias": float(self.global_bias),
            },
        )
