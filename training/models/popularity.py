"""Popularity: rank every user's items by how often the item is a training positive — the floor of every table.

score(u, i) = log(1 + training-positive count of i), the same for every user. Nothing is learned, so the trainer runs
zero epochs for it (a model without parameters); it is evaluated, logged, registered and served like any model. Its
serving form is the ``dot`` scorer with a zero user and item embedding of width 1 and the log count as item bias.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from training.models.base import Batch, ModelConfig, Recommender, ServingExport, TrainingData, register_model
from training.models.bpr_mf import dot_export


@register_model
class Popularity(Recommender):
    """log(1 + training-positive count) of the item; no user term, no parameters."""

    name = "popularity"
    Config = ModelConfig
    log_count: Tensor

    def __init__(self, config: ModelConfig, data: TrainingData):
        super().__init__(config, data)
        counts = np.bincount(data.train_positives["item"].to_numpy(), minlength=data.dataset.n_items)
        self.n_users = data.dataset.n_users
        self.register_buffer("log_count", torch.from_numpy(np.log1p(counts).astype(np.float32)))

    def training_loss(self, batch: Batch) -> Tensor:
        """Zero: there is nothing to learn (the trainer runs no epoch for a model without parameters)."""
        return torch.zeros(())

    def predict_logits(self, users: Tensor, items: Tensor) -> Tensor:
        """log(1 + count of the item's training positives), whoever the user."""
        return self.log_count[items]

    def export_serving(self) -> ServingExport:
        """Zero embeddings of width 1 for users and items, the log count as item bias, for the ``dot`` scorer."""
        return dot_export(torch.zeros(self.n_users, 1), torch.zeros(len(self.log_count), 1), self.log_count)
