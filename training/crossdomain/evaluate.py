"""The evaluation protocol of the Amazon release (CDRIB), with a sampler that is right for every set, plus a
full-catalogue ranking and per-group metrics.

- **Sampled ranking.** Each held-out row (u, i) of a domain is ranked against ``n_negatives`` items drawn without
  replacement from the domain's *training* items, excluding every item u has in that domain (train, valid or test).
  The candidates are drawn once per task and seed, so every model and epoch is ranked on the same lists. Ties with the
  positive are broken by a seeded draw (a constant scorer gets a random rank, not the best one). Metrics: MRR,
  NDCG@5/10, HR@1/5/10, and AUC (the share of the row's negatives scored below the positive, ties half).
- **Full catalogue.** Per user with held-out rows: every item of the domain except the user's training items is
  scored; Recall@20 and NDCG@20 of the user's held-out items, averaged over users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from training.crossdomain.task import CrossDomainTask

CHUNK_ROWS = 512
FULL_K = 20
SAMPLED_METRICS = ("MRR", "NDCG@5", "NDCG@10", "HR@1", "HR@5", "HR@10", "AUC")


@dataclass(frozen=True)
class Candidates:
    """Held-out rows of one domain and their candidate lists: column 0 the positive, then the sampled negatives."""

    users: np.ndarray
    items: np.ndarray  # (n_rows, 1 + n_negatives), local item ids


def sample_candidates(task: CrossDomainTask, domain: int, rows: np.ndarray, n_negatives: int, seed: int) -> Candidates:
    """Draw each row's negatives (module docstring); raise when the domain has too few training items for it."""
    pool = np.unique(task.train[domain][:, 1])
    every = np.concatenate([task.train[domain], task.valid[domain], task.test[domain]])
    order = np.argsort(every[:, 0], kind="stable")
    starts = np.searchsorted(every[order, 0], np.arange(task.n_users + 1))
    rng = np.random.default_rng(seed)
    negatives = np.empty((len(rows), n_negatives), dtype=np.int64)
    for index, (user, _) in enumerate(rows):
        own = every[order[starts[user] : starts[user + 1]], 1]
        allowed = len(pool) - np.isin(pool, own).sum()
        if allowed < n_negatives:
            raise ValueError(
                f"{task.domain_names[domain]}: user {user} leaves {allowed} training items to sample, "
                f"fewer than the {n_negatives} negatives asked for"
            )
        drawn = pool[rng.choice(len(pool), size=min(len(pool), n_negatives + len(own)), replace=False)]
        negatives[index] = drawn[~np.isin(drawn, own)][:n_negatives]
    return Candidates(rows[:, 0].copy(), np.concatenate([rows[:, 1:2], negatives], axis=1))


def rank_rows(users: torch.Tensor, items: torch.Tensor, candidates: Candidates, seed: int) -> tuple[np.ndarray, ...]:
    """Each row's 0-based rank of the positive among its candidates (ties broken by a seeded draw) and its AUC."""
    greater, ties = [], []
    for start in range(0, len(candidates.users), CHUNK_ROWS):
        user = users[torch.as_tensor(candidates.users[start : start + CHUNK_ROWS])]
        item = items[torch.as_tensor(candidates.items[start : start + CHUNK_ROWS])]
        scores = torch.einsum("bd,bkd->bk", user, item)
        positive = scores[:, :1]
        greater.append((scores[:, 1:] > positive).sum(1).numpy())
        ties.append((scores[:, 1:] == positive).sum(1).numpy())
    above, tied = np.concatenate(greater), np.concatenate(ties)
    n_negatives = candidates.items.shape[1] - 1
    rank = above + np.random.default_rng(seed).integers(0, tied + 1)
    return rank, (n_negatives - above - 0.5 * tied) / n_negatives


def sampled_metrics(rank: np.ndarray, auc: np.ndarray) -> dict[str, float]:
    """MRR, NDCG@5/10, HR@1/5/10 and AUC averaged over rows (NaN for no rows)."""
    if not len(rank):
        return dict.fromkeys(SAMPLED_METRICS, float("nan"))
    gain = 1.0 / np.log2(rank + 2.0)
    return {
        "MRR": float(np.mean(1.0 / (rank + 1.0))),
        "NDCG@5": float(np.mean(np.where(rank < 5, gain, 0.0))),
        "NDCG@10": float(np.mean(np.where(rank < 10, gain, 0.0))),
        "HR@1": float(np.mean(rank < 1)),
        "HR@5": float(np.mean(rank < 5)),
        "HR@10": float(np.mean(rank < 10)),
        "AUC": float(np.mean(auc)),
    }


def full_catalogue(
    task: CrossDomainTask, domain: int, users: torch.Tensor, items: torch.Tensor, rows: np.ndarray, k: int = FULL_K
) -> dict[str, float]:
    """Recall@k and NDCG@k over every item of the domain but the user's training items, averaged over users."""
    train = task.train[domain]
    recalls, ndcgs = [], []
    held_users = np.unique(rows[:, 0])
    for start in range(0, len(held_users), CHUNK_ROWS):
        batch = held_users[start : start + CHUNK_ROWS]
        scores = users[torch.as_tensor(batch)] @ items.T
        position = {user: index for index, user in enumerate(batch)}
        seen = train[np.isin(train[:, 0], batch)]
        scores[[position[u] for u in seen[:, 0]], torch.as_tensor(seen[:, 1])] = -torch.inf
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1).indices.numpy()
        for user, ranked in zip(batch, top, strict=True):
            relevant = rows[rows[:, 0] == user, 1]
            hits = np.isin(ranked, relevant)
            ideal = (1.0 / np.log2(np.arange(min(len(relevant), k)) + 2.0)).sum()
            recalls.append(hits.sum() / len(relevant))
            ndcgs.append((hits / np.log2(np.arange(len(ranked)) + 2.0)).sum() / ideal)
    return {f"Recall@{k}": float(np.mean(recalls)), f"NDCG@{k}": float(np.mean(ndcgs))}
