"""A chunk of users' labelled interactions: clicked items as positives, one unclicked item per positive as negative.

Pairs are handled as int64 keys ``user * n_items + item``, so sorting, de-duplication and membership tests are plain
numpy operations on one array. All draws are keyed by user (and item or index), so a user's rows never depend on
which chunk the user is in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.synth.catalog import Catalog
from training.synth.config import SynthConfig
from training.synth.counter_rng import Stream, below, uniform, within
from training.synth.paths import PathGroups, follow_paths
from training.synth.pools import Pools
from training.synth.users import BOTH_DOMAINS, FUNDS_ONLY, Users

WINDOW_END = 1_767_225_600  # 2026-01-01 00:00:00 UTC
WINDOW_SECONDS = 180 * 86_400


@dataclass(frozen=True)
class Positives:
    """Clicked (user, item) pairs of a chunk as sorted keys, with how often each was clicked."""

    keys: np.ndarray
    clicks: np.ndarray


def click_positives(config: SynthConfig, pools: Pools, paths: PathGroups, users: Users) -> Positives:
    """Draw every click of ``users``: the domain by the user's mode, then the taste pool or the domain by popularity;
    then, with ``kg_driven_share`` above 0, let that share of clicks follow KG paths (:mod:`training.synth.paths`)."""
    seed = config.seed
    owner = np.repeat(np.arange(len(users.ids)), users.clicks)
    user = users.ids[owner]
    index = within(users.clicks)
    mode = users.mode[owner]
    on_funds = (mode == FUNDS_ONLY) | (
        (mode == BOTH_DOMAINS) & (uniform(seed, Stream.CLICK_DOMAIN, user, index) < users.fund_share[owner])
    )
    by_taste = uniform(seed, Stream.CLICK_TASTE, user, index) < config.taste_strength
    pool = np.where(
        on_funds,
        np.where(by_taste, pools.fund_taste(users.sector[owner], users.risk[owner]), pools.all_funds),
        np.where(by_taste, pools.coupon_taste(users.category[owner]), pools.all_coupons),
    )
    items = pools.sample(pool, uniform(seed, Stream.CLICK_ITEM, user, index))
    if config.kg_driven_share > 0:
        items = follow_paths(config, paths, user, index, items)
    keys, clicks = np.unique(user * config.n_items + items, return_counts=True)
    return Positives(keys, clicks)


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if not len(sorted_keys):
        return np.zeros(len(keys), dtype=bool)
    return sorted_keys[np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)] == keys


def sample_negatives(config: SynthConfig, positives: np.ndarray) -> np.ndarray:
    """One distinct unclicked item per positive of each user, uniform over the catalogue (the KGCN 1:1 protocol).

    Rejected draws (a positive, or an item already chosen) are redrawn in rounds; a user never has more than
    n_items / 4 positives, so each round rejects at most about half and few rounds are needed.
    """
    n_items = config.n_items
    users, per_user = np.unique(positives // n_items, return_counts=True)
    pending_user = np.repeat(users, per_user)
    pending_slot = within(per_user)
    accepted = np.empty(0, dtype=np.int64)
    attempt = 0
    while len(pending_user):
        draws = below(config.seed, Stream.NEGATIVE_ITEM, n_items, pending_user, pending_slot, np.array([attempt]))
        keys = pending_user * n_items + draws
        first = np.zeros(len(keys), dtype=bool)
        first[np.unique(keys, return_index=True)[1]] = True
        ok = first & ~_contains(positives, keys) & ~_contains(accepted, keys)
        accepted = np.sort(np.concatenate([accepted, keys[ok]]))
        pending_user, pending_slot = pending_user[~ok], pending_slot[~ok]
        attempt += 1
    return accepted


def _timestamps(config: SynthConfig, stream: Stream, keys: np.ndarray) -> np.ndarray:
    user, item = np.divmod(keys, config.n_items)
    return WINDOW_END - WINDOW_SECONDS + below(config.seed, stream, WINDOW_SECONDS, user, item)


def positive_timestamps(config: SynthConfig, keys: np.ndarray) -> np.ndarray:
    """The timestamp ``labelled_rows`` gives each positive key (tags follow their positive in time)."""
    return _timestamps(config, Stream.CLICK_TIME, keys)


def labelled_rows(config: SynthConfig, catalog: Catalog, positives: Positives, negatives: np.ndarray) -> pd.DataFrame:
    """The interactions.tsv rows of a chunk, sorted by (user, item): clicks as weight, a timestamp in the window."""
    keys = np.concatenate([positives.keys, negatives])
    order = np.argsort(keys, kind="stable")
    timestamp = np.concatenate(
        [positive_timestamps(config, positives.keys), _timestamps(config, Stream.NEGATIVE_TIME, negatives)]
    )
    weight = np.concatenate([positives.clicks, np.zeros(len(negatives), dtype=np.int64)])
    user, item = np.divmod(keys[order], config.n_items)
    return pd.DataFrame(
        {
            "user": user,
            "item": item,
            "label": (order < len(positives.keys)).astype(np.int64),
            "timestamp": timestamp[order],
            "weight": weight[order].astype(np.float64),
            "domain": catalog.domain[item],
        },
        copy=False,
    )
