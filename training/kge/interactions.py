"""Stateless TransH interaction functions on embedding tensors (no parameters, no indices).

Kept apart from the module that owns the embedding tables so scoring can be reused by training, evaluation and other
models, and checked against a hand computation.
"""

from __future__ import annotations

from torch import Tensor


def project(x: Tensor, w: Tensor) -> Tensor:
    """Project ``x`` onto the hyperplane with unit normal ``w``: x - (wᵀx) w; shapes broadcast over leading dims."""
    return x - (x * w).sum(dim=-1, keepdim=True) * w


def transh_distance(h: Tensor, w_r: Tensor, d_r: Tensor, t: Tensor) -> Tensor:
    """Squared TransH distance ‖P_r(h) + d_r - P_r(t)‖² over the last dim; lower = more plausible.

    Inputs broadcast, so heads of shape (B, 1, d) score against tails of shape (B, K, d). Since
    P_r(h) - P_r(t) = P_r(h - t), one projection of the difference replaces two.
    """
    diff = project(h - t, w_r) + d_r
    return (diff * diff).sum(dim=-1)


def distance_to_all(query: Tensor, w_r: Tensor, entities: Tensor) -> Tensor:
    """Squared distances ‖query - P_r(e)‖² of B queries (B, d) to every entity e (N, d); shape (B, N).

    Tail prediction uses query = P_r(h) + d_r, head prediction query = P_r(t) - d_r. Expanding the square into
    matrix products keeps memory at O(B·N) instead of the O(B·N·d) of a broadcast difference. With s = wᵀe:
    ‖q‖² - 2(qᵀe - s·wᵀq) + ‖e‖² - s²(2 - ‖w‖²), exact for any w (so also for models whose normals are not unit).
    """
    s = w_r @ entities.T
    wq = (w_r * query).sum(dim=-1, keepdim=True)
    q2 = (query * query).sum(dim=-1, keepdim=True)
    w2 = (w_r * w_r).sum(dim=-1, keepdim=True)
    e2 = (entities * entities).sum(dim=-1)
    return q2 - 2.0 * (query @ entities.T - s * wq) + e2 - s * s * (2.0 - w2)
