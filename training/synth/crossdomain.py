"""The synthetic set as a two-domain transfer problem: funds and coupons with overlapping users, a cold-start hold-out
and a knob for the share of target-domain training interactions kept.

The generator already draws two domains (``vocab.DOMAINS``): each user uses funds only, coupons only or both
(``both_domains_share``), and a user's fund sector and coupon category both follow their taste segment, so behaviour in
one domain says something about the other. :func:`cross_domain_config` raises the overlap to half the users.

:func:`cross_domain_split` makes the split of one direction (source -> target), on positives only:

1. every source-domain positive is training (the source is where users are active);
2. a ``cold_share`` of the overlapping users (positives in both domains) are *cold*: all their target positives are
   held out, each to validation or test by a coin flip (the CDRIB protocol of the Amazon release);
3. of the other overlapping users' target positives, a ``holdout_share`` is held out the same way;
4. of the target positives still in training, each is kept with chance ``keep`` (the sparsity knob). One uniform
   draw per row decides it for every ``keep``, so the rows kept at 0.1 are a subset of those kept at 0.3.

All draws come from ``numpy.random.default_rng(seed)`` over rows sorted by (user, item), so a seed gives one split.
Held-out rows are never training rows, and a cold user has no target training row at any ``keep``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.data.dataset import Dataset
from training.data.splits import Split
from training.synth.config import SynthConfig


def cross_domain_config(n_users: int, seed: int = 0, n_items: int = 0) -> SynthConfig:
    """Generator settings of the cross-domain set: half the users active in both domains, a quarter in each alone."""
    return SynthConfig(n_users=n_users, seed=seed, n_items=n_items, both_domains_share=0.5, fund_only_share=0.25)


def cross_domain_split(
    dataset: Dataset,
    target: int,
    keep: float,
    seed: int = 0,
    cold_share: float = 0.2,
    holdout_share: float = 0.2,
) -> Split:
    """The split of the direction (other domain) -> ``target`` with ``keep`` of target training positives kept."""
    if set(np.unique(dataset.interactions["domain"])) - {0, 1} or target not in (0, 1):
        raise ValueError("a cross-domain split needs domains 0 and 1 and a target among them")
    for name, share in (("keep", keep), ("cold_share", cold_share), ("holdout_share", holdout_share)):
        if not 0 <= share <= 1:
            raise ValueError(f"{name} must lie in [0, 1], got {share}")
    rows = dataset.positives.sort_values(["user", "item"]).reset_index(drop=True)
    rng = np.random.default_rng(seed)
    row_draw, side_draw, keep_draw = rng.random(len(rows)), rng.random(len(rows)), rng.random(len(rows))
    user_draw = rng.random(dataset.n_users)
    in_target = rows["domain"].to_numpy() == target
    user = rows["user"].to_numpy()
    overlapping = np.zeros(dataset.n_users, dtype=bool)
    overlapping[np.intersect1d(user[in_target], user[~in_target])] = True
    cold = overlapping & (user_draw < cold_share)
    held = in_target & (cold[user] | (overlapping[user] & (row_draw < holdout_share)))
    train = ~in_target | (~held & (keep_draw < keep))
    is_test = held & (side_draw < 0.5)
    pick = lambda mask: rows[mask].reset_index(drop=True)  # noqa: E731
    return Split(train=pick(train), valid=pick(held & ~is_test), test=pick(is_test), protocol="topk")


def target_counts(split: Split, target: int, n_users: int) -> np.ndarray:
    """Each user's number of target-domain training positives (what the cold / sparse / rest groups are cut on)."""
    rows: pd.DataFrame = split.train[split.train["domain"] == target]
    return np.bincount(rows["user"].to_numpy(), minlength=n_users)
