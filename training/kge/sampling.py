"""Bernoulli negative sampling (Wang et al., AAAI 2014), vectorised over a batch.

For a 1-to-N relation (many tails per head) replacing the tail often yields another true triple, so the head is
corrupted more often: with probability tph / (tph + hpt), tph = mean tails per head, hpt = mean heads per tail.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def head_corruption_probability(triples: np.ndarray, n_relations: int) -> np.ndarray:
    """Per relation, tph / (tph + hpt) from (N, 3) int64 triples; shape (n_relations,), 0.5 for unseen relations."""
    rel = triples[:, 1]
    n_triples = np.bincount(rel, minlength=n_relations).astype(np.float64)
    n_heads = np.bincount(np.unique(triples[:, [1, 0]], axis=0)[:, 0], minlength=n_relations)
    n_tails = np.bincount(np.unique(triples[:, [1, 2]], axis=0)[:, 0], minlength=n_relations)
    tph = np.divide(n_triples, n_heads, out=np.ones(n_relations), where=n_heads > 0)
    hpt = np.divide(n_triples, n_tails, out=np.ones(n_relations), where=n_tails > 0)
    return tph / (tph + hpt)


class BernoulliSampler:
    """Draws ``num_negatives`` corruptions per positive; the replacement entity never equals the one it replaces."""

    def __init__(self, triples: np.ndarray, n_nodes: int, n_relations: int, num_negatives: int = 1, seed: int = 0):
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be at least 1, got {num_negatives}")
        self.n_nodes = n_nodes
        self.num_negatives = num_negatives
        self.p_head = torch.from_numpy(head_corruption_probability(triples, n_relations)).float()
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, pos: Tensor) -> Tensor:
        """Negatives for (B, 3) positives; shape (B, num_negatives, 3), on ``pos``'s device (drawn on the CPU)."""
        device, pos = pos.device, pos.cpu()
        neg = pos.unsqueeze(1).repeat(1, self.num_negatives, 1)
        shape = neg.shape[:2]
        corrupt_head = torch.rand(shape, generator=self.generator) < self.p_head[pos[:, 1]].unsqueeze(1)
        column = torch.where(corrupt_head, 0, 2)
        old = neg.gather(2, column.unsqueeze(-1)).squeeze(-1)
        new = torch.randint(0, self.n_nodes - 1, shape, generator=self.generator)
        new = new + (new >= old).long()  # skip the original entity: uniform over the other n_nodes - 1
        neg.scatter_(2, column.unsqueeze(-1), new.unsqueeze(-1))
        return neg.to(device)
