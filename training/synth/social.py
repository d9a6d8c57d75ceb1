"""Homophilous friendships: each user starts a heavy-tailed number of them, mostly with users of their own segment.

Friendships are int64 keys ``low * n_users + high`` (low < high), so the whole graph is one array that is sorted
once and de-duplicated while it is written; at 10^7 users that is about 30 million keys (a few hundred MiB).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.synth.config import SynthConfig
from training.synth.counter_rng import Stream, uniform, within
from training.synth.users import friendships_started, user_segments


@dataclass(frozen=True)
class SegmentIndex:
    """All users grouped by segment: segment s's members are ``members[starts[s] : starts[s] + sizes[s]]``."""

    members: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray


def index_segments(config: SynthConfig) -> SegmentIndex:
    """Group every user by taste segment, computing segments chunk by chunk to bound temporary memory."""
    segment = np.empty(config.n_users, dtype=np.int16)
    for start in range(0, config.n_users, config.chunk_users):
        ids = np.arange(start, min(start + config.chunk_users, config.n_users), dtype=np.int64)
        segment[ids] = user_segments(config, ids)
    members = np.argsort(segment, kind="stable").astype(np.int32 if config.n_users < 2**31 else np.int64)
    sizes = np.bincount(segment, minlength=config.n_segments).astype(np.int64)
    return SegmentIndex(members, np.cumsum(sizes) - sizes, sizes)


def count_started(config: SynthConfig) -> int:
    """Friendships started over all users (an upper bound on distinct friendships): the size to allocate."""
    total = 0
    for start in range(0, config.n_users, config.chunk_users):
        ids = np.arange(start, min(start + config.chunk_users, config.n_users), dtype=np.int64)
        total += int(friendships_started(config, ids).sum())
    return total


def friendship_keys(config: SynthConfig, index: SegmentIndex, ids: np.ndarray) -> np.ndarray:
    """Keys of the friendships users ``ids`` start, self-loops dropped (duplicates are removed when written)."""
    seed, n_users = config.seed, config.n_users
    started = friendships_started(config, ids)
    user = np.repeat(ids, started)
    nth = within(started)
    segment = user_segments(config, user)
    pick = uniform(seed, Stream.FRIEND_PICK, user, nth)
    sizes = index.sizes[segment]
    same = index.members[index.starts[segment] + np.minimum((pick * sizes).astype(np.int64), sizes - 1)]
    anyone = np.minimum((pick * n_users).astype(np.int64), n_users - 1)
    friend = np.where(uniform(seed, Stream.FRIEND_SAME, user, nth) < config.friend_homophily, same, anyone)
    low, high = np.minimum(user, friend), np.maximum(user, friend)
    keep = low != high
    return low[keep] * n_users + high[keep]


def friendship_rows(config: SynthConfig, sorted_keys: np.ndarray, rows_per_frame: int) -> Iterator[pd.DataFrame]:
    """social.tsv rows from sorted keys, each friendship once, in frames of at most ``rows_per_frame`` keys."""
    previous = -1
    for start in range(0, len(sorted_keys), rows_per_frame):
        part = sorted_keys[start : start + rows_per_frame]
        fresh = part != np.concatenate([[previous], part[:-1]])
        previous = int(part[-1])
        user, friend = np.divmod(part[fresh], config.n_users)
        yield pd.DataFrame({"user": user, "friend": friend}, copy=False)
