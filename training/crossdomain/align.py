"""Domain-invariant alignment losses between the two domains' representations of the same (shared) users.

MMD is the default: with a Gaussian kernel it is zero only when the two distributions are equal (all moments, not
just the first two), it needs no adversary (no min-max game, so a seed gives one result and small batches train
stably, unlike a gradient-reversal discriminator), and it has a closed form a test can check. CORAL (Sun & Saenko
2016) is kept as the cheaper option that matches second-order statistics only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

BANDWIDTH_SCALES = (0.25, 1.0, 4.0)  # multiples of the median heuristic: one narrow, one typical, one wide kernel


def gaussian_kernel(x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float]) -> torch.Tensor:
    """Sum over σ of exp(-||x_a - y_b||² / (2σ²)), an (len(x), len(y)) matrix."""
    distances = torch.cdist(x, y).pow(2)
    return sum(torch.exp(-distances / (2.0 * sigma**2)) for sigma in bandwidths)  # type: ignore[return-value]


def median_bandwidths(x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """σ values around the median pairwise distance of the pooled batch (the median heuristic), not differentiated."""
    pooled = torch.cat([x, y]).detach()
    median = torch.cdist(pooled, pooled).median().clamp_min(1e-6).item()
    return [median * scale for scale in BANDWIDTH_SCALES]


def mmd2(x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float] | None = None) -> torch.Tensor:
    """The biased (V-statistic) squared MMD between the rows of ``x`` and of ``y``."""
    sigmas = median_bandwidths(x, y) if bandwidths is None else list(bandwidths)
    return (
        gaussian_kernel(x, x, sigmas).mean()
        + gaussian_kernel(y, y, sigmas).mean()
        - 2.0 * gaussian_kernel(x, y, sigmas).mean()
    )


def coral(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CORAL: ||Cov(x) - Cov(y)||_F² / (4 d²), covariances with the n-1 denominator."""
    dim = x.shape[1]
    return (torch.cov(x.T) - torch.cov(y.T)).pow(2).sum() / (4.0 * dim * dim)


ALIGNMENTS = {"mmd": mmd2, "coral": coral}
