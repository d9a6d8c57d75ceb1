"""CTR metrics (AUC, F1) and top-K metrics (Recall@K, NDCG@K), overall and per user-activity tercile.

Metric names are flat keys: ``auc``, ``f1``, ``recall@20``, ``ndcg@20`` overall and ``<metric>/<tercile>`` per tercile
(``sparse``, ``medium``, ``active``; see :mod:`training.data.splits`). A tercile whose rows cannot define a metric (e.g.
AUC with one label only, or no evaluated user) gets NaN.

Top-K follows the KGCN protocol: for a seeded sample of users with a positive in the evaluated split, every item that
is not one of the user's *training* positives is a candidate; relevance = the user's positives in the evaluated split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score, roc_auc_score

from training.data.splits import TERCILE_NAMES
from training.models.base import Recommender, TrainingData

TOP_K = 20


def auc_f1(labels: np.ndarray, logits: np.ndarray) -> tuple[float, float]:
    """ROC AUC and F1 at threshold 0.5 on the sigmoid (logit > 0), via scikit-learn; AUC is NaN with one label."""
    f1 = float(f1_score(labels, (logits > 0).astype(int), zero_division=0))
    if len(np.unique(labels)) < 2:
        return float("nan"), f1
    return float(roc_auc_score(labels, logits)), f1


def ctr_metrics(labels: np.ndarray, logits: np.ndarray, row_terciles: np.ndarray) -> dict[str, float]:
    """``auc`` and ``f1`` overall and per tercile of the row's user."""
    auc, f1 = auc_f1(labels, logits)
    metrics = {"auc": auc, "f1": f1}
    for tercile, name in enumerate(TERCILE_NAMES):
        mask = row_terciles == tercile
        auc, f1 = auc_f1(labels[mask], logits[mask]) if mask.any() else (float("nan"), float("nan"))
        metrics |= {f"auc/{name}": auc, f"f1/{name}": f1}
    return metrics


def recall_ndcg_at_k(scores: torch.Tensor, relevant: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-user Recall@K and NDCG@K (binary relevance) of a (U, I) score matrix and a (U, I) bool relevance matrix.

    Excluded candidates must already score -inf. Recall = hits in the top K / relevant items; NDCG = DCG / ideal DCG,
    the ideal ranking putting min(relevant, K) hits first. Users without relevant items get NaN.
    """
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    hits = relevant.gather(1, top).double()
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    n_relevant = relevant.sum(dim=1)
    ideal = torch.cat([torch.zeros(1, dtype=torch.float64), discount.cumsum(0)])[n_relevant.clamp(max=k)]
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = (hits.sum(dim=1) / n_relevant.double()).numpy()
        ndcg = ((hits * discount).sum(dim=1) / ideal).numpy()
    return recall, ndcg


def mean_by_tercile(name: str, values: np.ndarray, user_terciles: np.ndarray) -> dict[str, float]:
    """``name`` = mean over users, and ``name/<tercile>`` = mean over that tercile's users (NaN if none)."""
    metrics = {name: float(np.nanmean(values)) if len(values) else float("nan")}
    for tercile, label in enumerate(TERCILE_NAMES):
        chosen = values[user_terciles == tercile]
        metrics[f"{name}/{label}"] = float(np.nanmean(chosen)) if len(chosen) else float("nan")
    return metrics


def _pair_matrix(pairs: pd.DataFrame, users: np.ndarray, n_items: int) -> torch.Tensor:
    """Dense (len(users), n_items) bool matrix of the (user, item) pairs, for the chosen users only."""
    position = pd.Series(np.arange(len(users)), index=users)
    chosen = pairs[pairs["user"].isin(position.index)]
    matrix = torch.zeros(len(users), n_items, dtype=torch.bool)
    rows = torch.from_numpy(position[chosen["user"]].to_numpy(dtype=np.int64))
    matrix[rows, torch.from_numpy(chosen["item"].to_numpy(dtype=np.int64))] = True
    return matrix


def sample_users(positives: pd.DataFrame, n_users: int | None, seed: int) -> np.ndarray:
    """Sorted users with a positive in ``positives``: all, or a seeded sample of ``n_users`` of them."""
    users = np.unique(positives["user"].to_numpy())
    if n_users is not None and len(users) > n_users:
        users = np.sort(np.random.default_rng(seed).choice(users, n_users, replace=False))
    return users


@torch.no_grad()
def score_matrix(model: Recommender, users: np.ndarray, n_items: int, pair_budget: int = 1 << 16) -> torch.Tensor:
    """(len(users), n_items) logits via ``predict_logits`` in eval mode, about ``pair_budget`` pairs per call."""
    was_training = model.training
    model.eval()
    step = max(1, pair_budget // max(n_items, 1))
    all_items = torch.arange(n_items)
    blocks = []
    try:
        for start in range(0, len(users), step):
            chunk = torch.from_numpy(users[start : start + step].astype(np.int64))
            logits = model.predict_logits(chunk.repeat_interleave(n_items), all_items.repeat(len(chunk)))
            blocks.append(logits.float().reshape(len(chunk), n_items))
    finally:
        model.train(was_training)
    return torch.cat(blocks) if blocks else torch.empty(0, n_items)


def topk_metrics(
    model: Recommender,
    data: TrainingData,
    relevant_rows: pd.DataFrame,
    k: int = TOP_K,
    n_users: int | None = 300,
    seed: int = 0,
) -> dict[str, float]:
    """``recall@k`` and ``ndcg@k`` overall and per tercile, ranking all items minus each user's training positives.

    ``relevant_rows`` is the evaluated split's labelled rows (its positives are the relevant items); ``n_users`` caps
    the seeded user sample (None = every user with a positive there).
    """
    positives = relevant_rows[relevant_rows["label"] == 1]
    users = sample_users(positives, n_users, seed)
    n_items = data.dataset.n_items
    scores = score_matrix(model, users, n_items)
    scores[_pair_matrix(data.train_positives, users, n_items)] = -torch.inf
    recall, ndcg = recall_ndcg_at_k(scores, _pair_matrix(positives, users, n_items), k)
    user_terciles = data.terciles[users]
    return mean_by_tercile(f"recall@{k}", recall, user_terciles) | mean_by_tercile(f"ndcg@{k}", ndcg, user_terciles)
