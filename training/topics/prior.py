"""The logistic-normal prior on a user's intent mixture and the closed-form KL term of the evidence bound.

θ = softmax(z), z ~ N(μ, diag σ²). The prior is the Laplace approximation of a symmetric Dirichlet(α) in the softmax
basis (MacKay 1998; ProdLDA, Srivastava & Sutton 2017): μ₀ₖ = log αₖ − mean(log α), σ₀ₖ² = (1 − 2/K)/αₖ + Σⱼ(1/αⱼ)/K².
"""

from __future__ import annotations

import torch


def laplace_dirichlet_prior(n_topics: int, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance (each shape (K,)) of the logistic normal approximating a symmetric Dirichlet(alpha)."""
    alphas = torch.full((n_topics,), float(alpha), dtype=torch.float32)
    mean = alphas.log() - alphas.log().mean()
    variance = (1.0 / alphas) * (1.0 - 2.0 / n_topics) + (1.0 / alphas).sum() / n_topics**2
    return mean, variance


def kl_to_prior(
    mu: torch.Tensor, logvar: torch.Tensor, prior_mean: torch.Tensor, prior_var: torch.Tensor
) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(prior_mean, diag prior_var)) per row, closed form; shape (n,)."""
    variance = logvar.exp()
    terms = variance / prior_var + (mu - prior_mean) ** 2 / prior_var - 1.0 + prior_var.log() - logvar
    return 0.5 * terms.sum(dim=1)
