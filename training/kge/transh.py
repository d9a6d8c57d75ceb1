"""TransH as a reusable layer: embedding tables, distances on index tensors, margin loss and soft constraints.

Nothing here knows about epochs, optimisers or sampling, so a recommender (e.g. KCAN) can own a ``TransH`` and add
``loss(pos, neg)`` to its own objective; after each optimiser step it should call ``renormalize_()``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from training.kge.interactions import transh_distance


def margin_loss(pos: Tensor, neg: Tensor, margin: float) -> Tensor:
    """Mean margin ranking loss relu(margin + d(pos) - d(neg)) on distances; pos (B,), neg (B, K)."""
    return F.relu(margin + pos.unsqueeze(-1) - neg).mean()


class TransH(nn.Module):
    """TransH (Wang et al., AAAI 2014): entities in R^d; relation r = unit normal w_r and translation d_r.

    Distance of (h, r, t) is ‖P_r(h) + d_r - P_r(t)‖², P_r the projection onto the hyperplane normal to w_r.
    ``loss`` adds the paper's soft constraints with weight ``constraint_weight`` (C): entity norms at most 1 and
    translations (almost) inside their hyperplane, |cos(w_r, d_r)| ≤ ``epsilon``.
    """

    def __init__(
        self,
        n_nodes: int,
        n_relations: int,
        dim: int = 64,
        margin: float = 1.0,
        constraint_weight: float = 0.05,
        epsilon: float = 1e-3,
    ) -> None:
        super().__init__()
        self.entity = nn.Embedding(n_nodes, dim)
        self.normal = nn.Embedding(n_relations, dim)
        self.translation = nn.Embedding(n_relations, dim)
        self.margin = margin
        self.constraint_weight = constraint_weight
        self.epsilon = epsilon
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random directions of unit length for every entity, normal and translation; uses torch's global RNG.

        Unit entities start on the boundary of the norm constraint, and unit translations keep d_r on the scale of
        entity differences (a uniform ±6/√d draw would give ‖d_r‖ ≈ 3.5 and drown the entities early on).
        """
        for table in (self.entity, self.normal, self.translation):
            nn.init.normal_(table.weight)
            with torch.no_grad():
                table.weight.copy_(F.normalize(table.weight, dim=-1))

    def distance(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """Distances of triples given as broadcastable index tensors (e.g. h (B, 1), t (B, K)); lower = truer."""
        return transh_distance(self.entity(h), self.normal(r), self.translation(r), self.entity(t))

    def triple_distance(self, triples: Tensor) -> Tensor:
        """Distances of (..., 3) (head, relation, tail) index tensors; shape (...).

        Heads and tails are gathered in one lookup, so the backward pass builds one dense entity gradient, not two.
        """
        ends = self.entity(triples[..., ::2])
        rel = triples[..., 1]
        return transh_distance(ends[..., 0, :], self.normal(rel), self.translation(rel), ends[..., 1, :])

    def constraint_penalty(self) -> Tensor:
        """Σ_e relu(‖e‖² - 1) + Σ_r relu((w_rᵀd_r)² / ‖d_r‖² - ε²) over all entities and relations, as in the paper.

        Only entities with ‖e‖ > 1 contribute value or gradient, so just those rows are gathered: same result, but
        the backward pass does not run several elementwise ops over the whole entity table every batch.
        """
        with torch.no_grad():
            over = (torch.linalg.vector_norm(self.entity.weight, dim=-1) > 1.0).nonzero().squeeze(1)
        entity = self.entity(over)
        norm_excess = F.relu((entity * entity).sum(dim=-1) - 1.0).sum()
        w, d = self.normal.weight, self.translation.weight
        cos2 = (w * d).sum(dim=-1).pow(2) / (d * d).sum(dim=-1).clamp_min(1e-12)
        return norm_excess + F.relu(cos2 - self.epsilon**2).sum()

    def loss(self, pos_triples: Tensor, neg_triples: Tensor) -> Tensor:
        """Margin loss of positives (B, 3) against their negatives (B, K, 3), plus C times the constraint penalty."""
        both = torch.cat((pos_triples.unsqueeze(1), neg_triples), dim=1)
        dist = self.triple_distance(both)
        return margin_loss(dist[:, 0], dist[:, 1:], self.margin) + self.constraint_weight * self.constraint_penalty()

    @torch.no_grad()
    def renormalize_(self) -> None:
        """Rescale every normal w_r to unit length (the hard constraint ‖w_r‖ = 1), in place."""
        self.normal.weight.copy_(F.normalize(self.normal.weight, dim=-1))
