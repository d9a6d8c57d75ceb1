"""CKE (Zhang et al., "Collaborative Knowledge Base Embedding for Recommender Systems", KDD 2016), structural part.

Item representation = latent offset η_i + structural KG embedding v_i of the item entity; score = ⟨u, η_i + v_i⟩ (+
item bias). Joint loss per step: the recommendation loss (BPR with sampled negatives by default, as in the paper, or
BCE on labelled rows) + ``kg_weight`` × the KG embedding loss on a random batch of KG triples.

Simplified: the paper's structural embedding is TransR; here it is the shared TransH layer of :mod:`training.kge`
(margin loss, Bernoulli negatives, soft constraints), trained on the KG triples and their inverses (no user edges).
The textual (SDAE) and visual (SCAE) components are omitted; L2 is Adam's ``weight_decay``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from serving.scoring.embedding import dot_logits
from training.kge.sampling import BernoulliSampler
from training.kge.transh import TransH
from training.models.base import Batch, ModelConfig, Recommender, ServingExport, TrainingData, register_model
from training.models.bpr_mf import LossKind, dot_export, recommendation_loss


class CKEConfig(ModelConfig):
    """CKE hyper-parameters. lr chosen on Last.FM validation AUC (seed 2021): 1e-2 0.843 vs 5e-3 0.841; the loss
    (BPR) follows the BPR-MF comparison; kg_weight and margin are untuned first choices."""

    loss: LossKind = "bpr"
    item_bias: bool = True
    kg_weight: float = 0.1
    kg_batch_size: int = 1024
    margin: float = 1.0
    lr: float = 1e-2
    weight_decay: float = 1e-5


@register_model
class CKE(Recommender):
    """MF whose item vectors add the item entity's TransH embedding, trained jointly with TransH."""

    name = "cke"
    Config = CKEConfig
    config: CKEConfig

    def __init__(self, config: CKEConfig, data: TrainingData):
        super().__init__(config, data)
        dataset = data.dataset
        kg = dataset.kg[["head", "relation", "tail"]].to_numpy(dtype=np.int64)
        inverse = np.stack([kg[:, 2], kg[:, 1] + dataset.n_relations, kg[:, 0]], axis=1)
        self.n_items = dataset.n_items
        self.register_buffer("triples", torch.from_numpy(np.concatenate([kg, inverse])), persistent=False)
        self.kge = TransH(dataset.n_entities, 2 * dataset.n_relations, config.dim, margin=config.margin)
        self.sampler = BernoulliSampler(
            self.triples.numpy(), dataset.n_entities, 2 * dataset.n_relations, seed=torch.initial_seed() % 2**63
        )
        self.user = nn.Embedding(dataset.n_users, config.dim)
        self.offset = nn.Embedding(self.n_items, config.dim)
        nn.init.normal_(self.user.weight, std=0.1)
        nn.init.normal_(self.offset.weight, std=0.1)
        self.bias = nn.Embedding(self.n_items, 1) if config.item_bias else None
        if self.bias is not None:
            nn.init.zeros_(self.bias.weight)

    def item_vectors(self, items: Tensor) -> Tensor:
        """η_i + v_i."""
        return self.offset(items) + self.kge.entity(items)

    def _score(self, users: Tensor, items: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias(items).squeeze(-1)
        return dot_logits(self.user(users), self.item_vectors(items), bias)

    def generator_states(self) -> dict[str, Tensor]:
        """The knowledge-graph negative sampler's generator (resumable fits save it)."""
        return {"kg_negatives": self.sampler.generator.get_state()}

    def restore_generators(self, states: dict[str, Tensor]) -> None:
        """Set the knowledge-graph negative sampler's generator."""
        self.sampler.generator.set_state(states["kg_negatives"])

    def training_loss(self, batch: Batch) -> Tensor:
        """Recommendation loss + kg_weight × TransH loss on a uniformly drawn batch of KG triples."""
        self.kge.renormalize_()
        positives = self.triples[torch.randint(0, len(self.triples), (self.config.kg_batch_size,))]
        kg_loss = self.kge.loss(positives, self.sampler.sample(positives))
        return recommendation_loss(self.config.loss, self._score, batch, self.n_items) + self.config.kg_weight * kg_loss

    def predict_logits(self, users: Tensor, items: Tensor) -> Tensor:
        """⟨u, η_i + v_i⟩ + b_i."""
        return self._score(users, items)

    def export_serving(self) -> ServingExport:
        """User vectors and item vectors η_i + v_i (+ bias) for the ``dot`` scorer."""
        items = torch.arange(self.n_items)
        bias = None if self.bias is None else self.bias.weight
        return dot_export(self.user.weight, self.item_vectors(items), bias)
