"""A two-domain dataset and its split as per-domain views in local item ids: what every cross-domain model trains on.

Each domain's items get local ids 0..n_d-1 (rank of the global item id among the domain's items); users keep their
one global id space, so a user with training rows in both domains is a *shared* user. Only the split's training rows
enter :attr:`CrossDomainTask.train` and therefore any graph; validation and test rows are evaluation targets only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from training.data.dataset import Dataset
from training.data.splits import Split


@dataclass(frozen=True)
class CrossDomainTask:
    """Per-domain (user, local item) arrays of shape (n, 2) for train / valid / test, and the domains evaluated."""

    name: str
    domain_names: tuple[str, str]
    n_users: int
    items: tuple[np.ndarray, np.ndarray]  # global item id of each local id, per domain
    train: tuple[np.ndarray, np.ndarray]
    valid: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    targets: tuple[int, ...]  # domains whose held-out rows are evaluated

    @property
    def n_items(self) -> tuple[int, int]:
        """Items per domain."""
        return len(self.items[0]), len(self.items[1])

    @cached_property
    def has_train(self) -> np.ndarray:
        """(2, n_users) bool: whether each user has a training row in each domain."""
        mask = np.zeros((2, self.n_users), dtype=bool)
        for domain in (0, 1):
            mask[domain, self.train[domain][:, 0]] = True
        return mask

    @cached_property
    def shared_users(self) -> np.ndarray:
        """Users with training rows in both domains: the only ones an alignment or a mapping may be fitted on."""
        return np.flatnonzero(self.has_train[0] & self.has_train[1])

    def train_counts(self, domain: int) -> np.ndarray:
        """Each user's number of training rows in ``domain``."""
        return np.bincount(self.train[domain][:, 0], minlength=self.n_users)


def _local(frame: pd.DataFrame, domain: int, lookup: pd.Series) -> np.ndarray:
    rows = frame[(frame["domain"] == domain) & (frame["label"] == 1)]
    return np.stack([rows["user"].to_numpy(), lookup.loc[rows["item"].to_numpy()].to_numpy()], axis=1).astype(np.int64)


def build_task(dataset: Dataset, split: Split, targets: tuple[int, ...]) -> CrossDomainTask:
    """The per-domain views of ``split``'s positives; items of a domain are every item its rows mention."""
    frame = dataset.interactions
    if sorted(np.unique(frame["domain"])) != [0, 1]:
        raise ValueError(f"{dataset.name}: a cross-domain task needs interaction domains 0 and 1")
    items = tuple(np.unique(frame.loc[frame["domain"] == d, "item"].to_numpy()) for d in (0, 1))
    lookups = [pd.Series(np.arange(len(ids)), index=ids) for ids in items]
    names = tuple(dataset.domains[:2]) if len(dataset.domains) >= 2 else ("domain0", "domain1")
    part = lambda table: tuple(_local(table, d, lookups[d]) for d in (0, 1))  # noqa: E731
    return CrossDomainTask(
        name=dataset.name,
        domain_names=(str(names[0]), str(names[1])),
        n_users=dataset.n_users,
        items=(items[0], items[1]),
        train=part(split.train),
        valid=part(split.valid),
        test=part(split.test),
        targets=targets,
    )
