"""Diagnostics of a trained recommender: does each part of the model do work, and are its rankings personal?

Pure functions over tensors and arrays, so a model can call them on whatever it holds (issue 11):

- **Knowledge-aware attention** (edge-level α, e.g. from DGL's ``edge_softmax``, with each edge's destination node):
  :func:`attention_summary` — normalised entropy per node (1 = uniform) and largest α relative to uniform, per layer.
- **Distillation** (the kept edges of each node's star, ``(n_nodes, k)`` edge ids padded with -1, as
  ``kcan_layers.Neighbourhoods.edge``; :func:`top_k_edges` builds them from α and k): :func:`distillation_summary` —
  share of stars that lose neighbours and the α mass kept.
- **Conditional attention**: :func:`conditioning_sensitivity` — share of the refined representations' variance that
  the target explains; :func:`weights_entropy` — whether β selects at all (static selection has sensitivity 0).
- **Where the logit comes from**: :func:`logit_shares` — each additive part's share of the logit's variance over
  random pairs (for KCAN: the towers, which the knowledge stages feed, against its MF-like residual channels).
- **Personalisation** of a (users × items) score matrix over candidate items: :func:`personalisation` — item main
  effect share, mean pairwise top-K Jaccard, catalogue coverage; :func:`model_personalisation` computes it from a
  model's ``predict_logits`` (the default of ``Recommender.diagnostics``).

Keys are flat strings (``attention/layer1/entropy_mean``, ``distill/share_cut``, ``personal/item_share``), logged to
MLflow as ``diag_<key>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from training.evaluation.metrics import TOP_K, sample_users, score_matrix

if TYPE_CHECKING:
    from training.models.base import Recommender, TrainingData

DIAGNOSTIC_USERS = 300


def _per_node_sum(values: Tensor, dst: Tensor, n_nodes: int) -> Tensor:
    """Σ of edge ``values`` per destination node, float64; shape (n_nodes,)."""
    return torch.zeros(n_nodes, dtype=torch.float64, device=values.device).index_add_(0, dst, values.double())


def attention_entropy(alpha: Tensor, dst: Tensor, n_nodes: int) -> Tensor:
    """Per-node H(α)/log(in-degree): 1 when a node's attention is uniform, 0 when one-hot; NaN for degree ≤ 1 (there
    is nothing to choose between). α is renormalised per node, so masked edges (α = 0) are allowed; shape (n_nodes,)."""
    alpha = alpha.detach().double()
    degree = torch.bincount(dst, minlength=n_nodes)
    p = alpha / _per_node_sum(alpha, dst, n_nodes)[dst].clamp_min(1e-300)
    plogp = torch.where(p > 0, p * p.clamp_min(1e-300).log(), torch.zeros_like(p))
    entropy = -_per_node_sum(plogp, dst, n_nodes)
    normalised = entropy / degree.double().clamp_min(2).log()
    return torch.where(degree > 1, normalised, torch.full_like(normalised, float("nan")))


def max_over_uniform(alpha: Tensor, dst: Tensor, n_nodes: int) -> Tensor:
    """Per-node max α ÷ (1/in-degree): 1 for uniform attention, in-degree for one-hot; NaN for degree ≤ 1 (it shows
    how far the strongest neighbour stands above an unweighted mean); shape (n_nodes,)."""
    alpha = alpha.detach().double()
    degree = torch.bincount(dst, minlength=n_nodes)
    p = alpha / _per_node_sum(alpha, dst, n_nodes)[dst].clamp_min(1e-300)
    largest = torch.zeros(n_nodes, dtype=torch.float64, device=alpha.device)
    largest = largest.scatter_reduce(0, dst, p, reduce="amax", include_self=False)
    ratio = largest * degree.double()
    return torch.where(degree > 1, ratio, torch.full_like(ratio, float("nan")))


def _nan_stats(values: Tensor) -> tuple[float, float]:
    """(mean, median) of the non-NaN entries; NaN for both when there are none."""
    kept = values[~values.isnan()]
    if kept.numel() == 0:
        return float("nan"), float("nan")
    return float(kept.mean()), float(kept.median())


def attention_summary(alphas: Sequence[Tensor], dst: Tensor, n_nodes: int) -> dict[str, float]:
    """Per propagation layer (``alphas[l]``: edge-level α of layer l+1, all over the same edges ``dst``): mean and
    median normalised entropy and max/uniform ratio over nodes of in-degree ≥ 2 — near 1 means α does not select."""
    summary: dict[str, float] = {}
    for layer, alpha in enumerate(alphas, start=1):
        entropy_mean, entropy_median = _nan_stats(attention_entropy(alpha, dst, n_nodes))
        ratio_mean, ratio_median = _nan_stats(max_over_uniform(alpha, dst, n_nodes))
        summary |= {
            f"attention/layer{layer}/entropy_mean": entropy_mean,
            f"attention/layer{layer}/entropy_median": entropy_median,
            f"attention/layer{layer}/max_ratio_mean": ratio_mean,
            f"attention/layer{layer}/max_ratio_median": ratio_median,
        }
    return summary


def top_k_edges(alpha: Tensor, dst: Tensor, n_nodes: int, k: int) -> Tensor:
    """Edge ids of each node's k largest-α in-edges, padded with -1 (ties by edge id), shape (n_nodes, k): the star a
    top-k distillation keeps, for :func:`distillation_summary` when only α and k are at hand."""
    order = torch.argsort(-alpha.detach(), stable=True)
    order = order[torch.argsort(dst[order], stable=True)]
    sorted_dst = dst[order]
    degree = torch.bincount(dst, minlength=n_nodes)
    rank = torch.arange(len(order), device=dst.device) - (torch.cumsum(degree, 0) - degree)[sorted_dst]
    keep = rank < k
    kept = torch.full((n_nodes, k), -1, dtype=torch.long, device=dst.device)
    kept[sorted_dst[keep], rank[keep]] = order[keep]
    return kept


def distillation_summary(alpha: Tensor, dst: Tensor, n_nodes: int, kept_edge: Tensor) -> dict[str, float]:
    """Over nodes with an in-edge: share whose distilled star (``kept_edge``, (n_nodes, k) edge ids, -1 = padding)
    drops neighbours, and mean Σ kept α / Σ α — a share near 0 and mass near 1 mean distillation changes nothing."""
    alpha = alpha.detach().double()
    degree = torch.bincount(dst, minlength=n_nodes)
    valid = kept_edge >= 0
    kept_count = valid.sum(dim=1)
    kept_mass = torch.where(valid, alpha[kept_edge.clamp_min(0)], torch.zeros((), dtype=alpha.dtype)).sum(dim=1)
    total = _per_node_sum(alpha, dst, n_nodes)
    has_edges = degree > 0
    with_mass = has_edges & (total > 0)
    cut = (kept_count[has_edges] < degree[has_edges]).double()
    mass = kept_mass[with_mass] / total[with_mass]
    return {
        "distill/share_cut": float(cut.mean()) if cut.numel() else float("nan"),
        "distill/mass_kept": float(mass.mean()) if mass.numel() else float("nan"),
    }


def conditioning_sensitivity(refined: Tensor) -> float:
    """Share of the variance of refined representations explained by the target: ``refined`` is (centres, targets,
    d), the same centre refined under different targets; mean over centres of the across-target variance ÷ the total
    variance over centres and targets. 0 when attention ignores the target, 1 when only the target matters."""
    x = refined.detach().double()
    within = ((x - x.mean(dim=1, keepdim=True)) ** 2).sum(dim=-1).mean()
    total = ((x - x.mean(dim=(0, 1), keepdim=True)) ** 2).sum(dim=-1).mean()
    return float(within / total) if total > 0 else 0.0


def weights_entropy(weights: Tensor, kept: Tensor) -> float:
    """Mean normalised entropy H(w)/log(kept) of per-row weights (B, k) over the rows with at least two ``kept``
    entries (1 = uniform, 0 = one-hot); NaN when no row has two. For a star's attention β, as
    :func:`attention_entropy` is for α."""
    count = kept.sum(dim=1)
    rows = count > 1
    if not bool(rows.any()):
        return float("nan")
    w = (weights * kept).double()[rows]
    w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-300)
    entropy = -torch.where(w > 0, w * w.clamp_min(1e-300).log(), torch.zeros_like(w)).sum(dim=1)
    return float((entropy / count[rows].double().log()).mean())


def logit_shares(parts: dict[str, Tensor]) -> dict[str, float]:
    """Each additive part's share of the variance of their sum (the logit) over a sample of pairs: cov(part, logit) ÷
    var(logit), so the shares add up to 1 (a part that cancels others gets a negative share); all 0 when the logit
    does not vary. It says which path a model actually ranks by, e.g. whether its attention-fed towers matter or a
    residual dot product carries the score."""
    values = {name: part.detach().double().flatten() for name, part in parts.items()}
    logit = sum(values.values())
    centred = logit - logit.mean()
    total = float((centred * centred).sum())
    if total <= 0.0:
        return dict.fromkeys(values, 0.0)
    return {name: float(((part - part.mean()) * centred).sum()) / total for name, part in values.items()}


def item_main_effect_share(scores: np.ndarray, candidates: np.ndarray) -> float:
    """Two-way decomposition of a (users × items) score matrix over its ``candidates`` (bool, same shape): after
    removing each user's mean, the share of squared deviation explained by the item column means — 1 when every user
    ranks items the same way (a popularity list), near 0 when rankings are personal; 0 when no user's scores vary
    (beyond rounding)."""
    x = np.where(candidates, scores, 0.0).astype(np.float64)
    user_mean = x.sum(axis=1, keepdims=True) / np.maximum(candidates.sum(axis=1, keepdims=True), 1)
    residual = np.where(candidates, x - user_mean, 0.0)
    item_effect = residual.sum(axis=0) / np.maximum(candidates.sum(axis=0), 1)
    explained = float((np.where(candidates, item_effect, 0.0) ** 2).sum())
    total = float((residual**2).sum())
    negligible = 1e-12 * float((x**2).sum())  # rounding left over by removing the user means
    return explained / total if total > negligible else 0.0


def top_k_items(scores: np.ndarray, candidates: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Each user's k best-scored candidate items (ties by item id), (users, k), -1 where a user has fewer than k."""
    masked = np.where(candidates, scores, -np.inf)
    top = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    return np.where(np.take_along_axis(candidates, top, axis=1), top, -1)


def mean_pairwise_jaccard(top: np.ndarray, n_items: int) -> float:
    """Mean Jaccard overlap of the top-K lists (rows of ``top``, -1 = empty slot) over every pair of users: near 1
    means everyone gets the same list. NaN with fewer than two users."""
    n_users = len(top)
    if n_users < 2:
        return float("nan")
    member = np.zeros((n_users, n_items), dtype=np.float32)
    rows, slots = np.nonzero(top >= 0)
    member[rows, top[rows, slots]] = 1.0
    overlap = member @ member.T
    sizes = member.sum(axis=1)
    upper = np.triu_indices(n_users, k=1)
    union = (sizes[:, None] + sizes[None, :] - overlap)[upper]
    shared = overlap[upper]
    return float(np.mean(np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)))


def catalogue_coverage(top: np.ndarray, n_items: int) -> float:
    """Distinct items in the union of the top-K lists ÷ catalogue size: how much of the catalogue is ever shown."""
    return len(np.unique(top[top >= 0])) / n_items


def personalisation(scores: np.ndarray, candidates: np.ndarray, k: int = TOP_K) -> dict[str, float]:
    """Item main-effect share, mean pairwise top-k Jaccard and top-k catalogue coverage of a (users × items) score
    matrix whose ``candidates`` (bool) exclude each user's training positives."""
    top = top_k_items(scores, candidates, k)
    n_items = scores.shape[1]
    return {
        "personal/item_share": item_main_effect_share(scores, candidates),
        f"personal/top{k}_jaccard": mean_pairwise_jaccard(top, n_items),
        "personal/coverage": catalogue_coverage(top, n_items),
    }


def model_personalisation(
    model: Recommender, data: TrainingData, n_users: int = DIAGNOSTIC_USERS, seed: int = 0
) -> dict[str, float]:
    """:func:`personalisation` of ``model``'s ``predict_logits`` for a seeded sample of users with a training
    positive × every item (eval mode, no gradients), candidates = items that are not the user's training positives."""
    users = sample_users(data.train_positives, n_users, seed)
    n_items = data.dataset.n_items
    scores = score_matrix(model, users, n_items).numpy()
    positives = data.train_positives
    pos_users, pos_items = positives["user"].to_numpy(), positives["item"].to_numpy()
    row = np.searchsorted(users, pos_users).clip(max=max(len(users) - 1, 0))
    chosen = users[row] == pos_users
    candidates = np.ones((len(users), n_items), dtype=bool)
    candidates[row[chosen], pos_items[chosen]] = False
    return personalisation(scores, candidates)
