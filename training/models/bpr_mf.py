"""BPR-MF (Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009).

User and item embeddings scored by a dot product plus an item bias. With ``loss="bpr"`` (default) each training
positive of the batch is paired with a uniformly sampled item as its negative and the BPR loss -ln σ(x_ui - x_uj) is
minimised; labelled negatives are not used (they are uniform non-interacted items too, as the sampled ones). With
``loss="bce"`` the model is trained pointwise on the batch's labelled rows instead. L2 regularisation is Adam's
``weight_decay``. Simplifications: Adam instead of SGD with bootstrap sampling; the item bias is an (optional) addition.
Extension ``user_intent``: the user vector is p_u + Wθ_u with θ_u the intent topic mixture (a side feature a sparse
user has even with few interactions); exported as the summed vector, so serving is unchanged.

The loss helpers here are shared by the other embedding baselines (CKE, KGAT).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from serving.scoring.embedding import dot_logits
from training.models.base import (
    Batch,
    ModelConfig,
    Recommender,
    ServingExport,
    TrainingData,
    intent_projection,
    register_model,
)

ScoreFn = Callable[[Tensor, Tensor], Tensor]
LossKind = Literal["bpr", "bce"]


def recommendation_loss(kind: LossKind, score: ScoreFn, batch: Batch, n_items: int) -> Tensor:
    """BPR over the batch's positives with uniform sampled negatives (torch global RNG), or BCE on labelled rows."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(score(batch.users, batch.items), batch.labels.float())
    positive = batch.labels > 0
    users, items = batch.users[positive], batch.items[positive]
    negatives = torch.randint(0, n_items, items.shape)
    return -F.logsigmoid(score(users, items) - score(users, negatives)).mean()


def embedding_frame(id_column: str, ids: np.ndarray, **columns: np.ndarray) -> pd.DataFrame:
    """Feature table with an id column and one column per feature: 2-D arrays become per-row float32 arrays."""
    frame: dict[str, object] = {id_column: ids.astype(np.int64)}
    for name, values in columns.items():
        values = np.asarray(values, dtype=np.float32)
        frame[name] = list(values) if values.ndim > 1 else values
    return pd.DataFrame(frame)


def dot_export(user_embedding: Tensor, item_embedding: Tensor, item_bias: Tensor | None) -> ServingExport:
    """Serving form of a dot-product model: ``embedding`` per user and item (+ item ``bias``), scorer ``dot``."""
    items: dict[str, np.ndarray] = {"embedding": item_embedding.detach().numpy()}
    if item_bias is not None:
        items["bias"] = item_bias.detach().reshape(-1).numpy()
    return ServingExport(
        user_features=embedding_frame(
            "user_id", np.arange(len(user_embedding)), embedding=user_embedding.detach().numpy()
        ),
        item_features=embedding_frame("item_id", np.arange(len(item_embedding)), **items),
        scorer_kind="dot",
        scorer_state={"item_bias": item_bias is not None},
    )


class BPRMFConfig(ModelConfig):
    """BPR-MF hyper-parameters. Chosen on Last.FM validation AUC (seed 2021): BPR 0.835 vs BCE 0.764 at lr 5e-3;
    lr 1e-2 0.839 vs 5e-3 0.835."""

    loss: LossKind = "bpr"
    item_bias: bool = True
    user_intent: bool = False  # p_u + Wθ_u with θ_u the intent topic mixture (see TrainingData.user_intent)
    lr: float = 1e-2
    weight_decay: float = 1e-5


@register_model
class BPRMF(Recommender):
    """Matrix factorisation trained with BPR (or BCE); score = ⟨p_u, q_i⟩ + b_i."""

    name = "bpr_mf"
    Config = BPRMFConfig
    extensions = {"intent topics": {"user_intent": True}}
    config: BPRMFConfig

    def __init__(self, config: BPRMFConfig, data: TrainingData):
        super().__init__(config, data)
        self.n_items = data.dataset.n_items
        self.user = nn.Embedding(data.dataset.n_users, config.dim)
        self.item = nn.Embedding(self.n_items, config.dim)
        nn.init.normal_(self.user.weight, std=0.1)
        nn.init.normal_(self.item.weight, std=0.1)
        self.bias = nn.Embedding(self.n_items, 1) if config.item_bias else None
        if self.bias is not None:
            nn.init.zeros_(self.bias.weight)
        self.intent_projection = intent_projection(data, config.dim) if config.user_intent else None
        if self.intent_projection is not None:
            self.register_buffer("intent", torch.from_numpy(data.user_intent), persistent=False)

    def user_vectors(self, users: Tensor | None = None) -> Tensor:
        """p_u (+ Wθ_u with the intent extension) of ``users``, or of every user."""
        vectors = self.user.weight if users is None else self.user(users)
        if self.intent_projection is None:
            return vectors
        return vectors + self.intent_projection(self.intent if users is None else self.intent[users])

    def _score(self, users: Tensor, items: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias(items).squeeze(-1)
        return dot_logits(self.user_vectors(users), self.item(items), bias)

    def training_loss(self, batch: Batch) -> Tensor:
        """BPR (or BCE) loss of the batch."""
        return recommendation_loss(self.config.loss, self._score, batch, self.n_items)

    def predict_logits(self, users: Tensor, items: Tensor) -> Tensor:
        """⟨p_u, q_i⟩ + b_i."""
        return self._score(users, items)

    def export_serving(self) -> ServingExport:
        """User and item embeddings (+ item bias) for the ``dot`` scorer."""
        return dot_export(self.user_vectors(), self.item.weight, None if self.bias is None else self.bias.weight)
