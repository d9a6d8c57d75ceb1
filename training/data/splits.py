"""Train/validation/test splits and user-activity terciles.

- CTR protocol (KGCN / RippleNet on Last.FM): a seeded random 6:2:2 split over labelled rows.
- Top-K protocol: per-user hold-out of positives (each user keeps at least one training positive).
- ``--protocol topk`` (RecBole's setting): :func:`holdout_split`, a per-user 8:1:1 hold-out of each user's labelled
  rows, positives and negatives apart, so every part keeps both labels (validation AUC selects epochs and trials as in
  the CTR protocol) and its positives are the items ranked against the full catalogue.
- Activity terciles: users ranked by their number of *training* positives, cut into three equal groups
  (0 = sparsest, 2 = most active); ties are broken by user id so the cut is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd

TERCILE_NAMES = ("sparse", "medium", "active")
Protocol = Literal["ctr", "topk"]
PROTOCOLS: tuple[str, ...] = get_args(Protocol)


@dataclass(frozen=True)
class Split:
    """Three disjoint row sets of one interaction table."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    protocol: Protocol = "ctr"  # how the rows were split: decides how top-K metrics sample users (see metrics.py)

    def train_positives(self) -> pd.DataFrame:
        """The training rows labelled 1: the only (user, item) pairs a graph or feature job may see."""
        return self.train[self.train["label"] == 1]


def ctr_split(interactions: pd.DataFrame, seed: int, ratios: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Split:
    """Random row split of labelled interactions (KGCN protocol), seeded."""
    if not np.isclose(sum(ratios), 1.0) or min(ratios) < 0:
        raise ValueError(f"split ratios must be non-negative and sum to 1, got {ratios}")
    order = np.random.default_rng(seed).permutation(len(interactions))
    n_train = int(round(ratios[0] * len(order)))
    n_valid = int(round(ratios[1] * len(order)))
    rows = interactions.reset_index(drop=True)
    return Split(
        train=rows.iloc[np.sort(order[:n_train])].reset_index(drop=True),
        valid=rows.iloc[np.sort(order[n_train : n_train + n_valid])].reset_index(drop=True),
        test=rows.iloc[np.sort(order[n_train + n_valid :])].reset_index(drop=True),
    )


def topk_split(interactions: pd.DataFrame, seed: int, valid_frac: float = 0.1, test_frac: float = 0.2) -> Split:
    """Per-user hold-out of positives; every user with a positive keeps at least one in train."""
    positives = interactions[interactions["label"] == 1].reset_index(drop=True)
    random_key = np.random.default_rng(seed).random(len(positives))
    order = positives.assign(_key=random_key).sort_values(["user", "_key"]).index.to_numpy()
    ordered = positives.loc[order].reset_index(drop=True)
    position = ordered.groupby("user").cumcount().to_numpy()
    size = ordered.groupby("user")["user"].transform("size").to_numpy()
    n_test = np.floor(size * test_frac).astype(int)
    n_valid = np.floor(size * valid_frac).astype(int)
    n_test = np.where(size - n_test - n_valid < 1, np.maximum(size - n_valid - 1, 0), n_test)
    is_test = position < n_test
    is_valid = ~is_test & (position < n_test + n_valid)
    pick = lambda mask: ordered[mask].sort_values(["user", "item"]).reset_index(drop=True)  # noqa: E731
    return Split(train=pick(~is_test & ~is_valid), valid=pick(is_valid), test=pick(is_test))


def holdout_split(interactions: pd.DataFrame, seed: int, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> Split:
    """Per-user, per-label seeded hold-out of labelled rows: valid and test each take the nearest whole number to
    their share of a user's positives (and of their negatives); a user with a positive keeps one in train."""
    if not np.isclose(sum(ratios), 1.0) or min(ratios) < 0:
        raise ValueError(f"split ratios must be non-negative and sum to 1, got {ratios}")
    rows = interactions.reset_index(drop=True)
    key = np.random.default_rng(seed).random(len(rows))
    ordered = rows.assign(_key=key).sort_values(["user", "label", "_key"]).drop(columns="_key")
    groups = ordered.groupby(["user", "label"])
    position = groups.cumcount().to_numpy()
    size = groups["user"].transform("size").to_numpy()
    n_test = np.floor(size * ratios[2] + 0.5).astype(int)
    n_valid = np.floor(size * ratios[1] + 0.5).astype(int)
    spare = size - n_test - n_valid - (ordered["label"].to_numpy() == 1)  # positives keep one row in train
    n_valid = np.where(spare < 0, np.maximum(n_valid + spare, 0), n_valid)
    n_test = np.minimum(n_test, size - n_valid - (ordered["label"].to_numpy() == 1))
    part = np.where(position < n_test, 2, np.where(position < n_test + n_valid, 1, 0))
    train, valid, test = (ordered[part == p].sort_values(["user", "item"]).reset_index(drop=True) for p in range(3))
    return Split(train=train, valid=valid, test=test, protocol="topk")


def make_split(interactions: pd.DataFrame, seed: int, protocol: Protocol = "ctr") -> Split:
    """The split of ``protocol``: 6:2:2 random rows (``ctr``) or the per-user 8:1:1 hold-out (``topk``)."""
    if protocol == "ctr":
        return ctr_split(interactions, seed)
    if protocol == "topk":
        return holdout_split(interactions, seed)
    raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")


def activity_terciles(train_positives: pd.DataFrame, n_users: int) -> np.ndarray:
    """Tercile (0 sparse, 1 medium, 2 active) of every user by training-positive count; shape (n_users,)."""
    counts = np.bincount(train_positives["user"].to_numpy(), minlength=n_users)
    order = np.lexsort((np.arange(n_users), counts))  # by count, ties by user id
    terciles = np.empty(n_users, dtype=np.int64)
    terciles[order] = np.minimum(np.arange(n_users) * 3 // max(n_users, 1), 2)
    return terciles
