"""Counter-based random numbers: each value is a pure function of (seed, stream, keys such as user id and index).

A value never depends on how many values were drawn before it, so the generator's output is identical whatever
chunk size it processes users in, and any user's draws can be recomputed in any order without storing them.
"""

from __future__ import annotations

from enum import IntEnum, auto

import numpy as np

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_UNIT = 1.0 / (1 << 53)


class Stream(IntEnum):
    """Every independent random quantity the generator draws; one stream per quantity so none are correlated."""

    ITEM_ORDER = auto()
    ITEM_POPULARITY = auto()
    MANAGER_SECTOR = auto()
    FUND_MANAGER = auto()
    FUND_RISK = auto()
    MERCHANT_CATEGORY = auto()
    COUPON_MERCHANT = auto()
    SEGMENT_CATEGORY = auto()
    SEGMENT_RISK = auto()
    USER_SEGMENT = auto()
    USER_SECTOR_KEEP = auto()
    USER_SECTOR = auto()
    USER_CATEGORY_KEEP = auto()
    USER_CATEGORY = auto()
    USER_RISK_KEEP = auto()
    USER_RISK = auto()
    USER_MODE = auto()
    USER_FUND_SHARE = auto()
    USER_CLICKS = auto()
    USER_TAGGER = auto()
    USER_FRIENDS = auto()
    CLICK_DOMAIN = auto()
    CLICK_TASTE = auto()
    CLICK_ITEM = auto()
    CLICK_TIME = auto()
    NEGATIVE_ITEM = auto()
    NEGATIVE_TIME = auto()
    TAG_PICK = auto()
    TAG_COUNT = auto()
    TAG_WORD = auto()
    TAG_DELAY = auto()
    FRIEND_SAME = auto()
    FRIEND_PICK = auto()
    # Appended, never inserted: a stream's number is its value, so inserting one would change every later stream.
    PATH_CLICK = auto()
    PATH_PARENT = auto()
    PATH_ITEM = auto()


def _mix(words: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, in place: a bijection of 64-bit words; each output bit depends on every input bit."""
    words ^= words >> np.uint64(30)
    words *= _MIX_1
    words ^= words >> np.uint64(27)
    words *= _MIX_2
    words ^= words >> np.uint64(31)
    return words


def uniform(seed: int, stream: Stream, *keys: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1), one per element of the broadcast 1-d ``keys`` (non-negative integers)."""
    start = np.array([seed, int(stream)], dtype=np.uint64)
    state = _mix(start[:1] * _GAMMA + start[1:])
    shape = np.broadcast_shapes(*(np.shape(key) for key in keys))
    words = np.full(shape, state[0], dtype=np.uint64)
    for key in keys:
        words += np.asarray(key, dtype=np.int64).astype(np.uint64) * _GAMMA
        _mix(words)
    return (words >> np.uint64(11)).astype(np.float64) * _UNIT


def below(seed: int, stream: Stream, high: int | np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """Uniform integers in [0, high) (``high`` may vary per element), keyed like :func:`uniform`."""
    values = (uniform(seed, stream, *keys) * high).astype(np.int64)
    return np.minimum(values, np.asarray(high) - 1)


def categorical(seed: int, stream: Stream, weights: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """Indices into ``weights`` drawn with probability proportional to the weights, keyed like :func:`uniform`."""
    cdf = np.cumsum(weights, dtype=np.float64)
    cdf /= cdf[-1]
    picks = np.searchsorted(cdf, uniform(seed, stream, *keys), side="right")
    return np.minimum(picks, len(weights) - 1)


def within(counts: np.ndarray) -> np.ndarray:
    """0, 1, ..., n-1 for each n in ``counts``, concatenated: the index of each draw within its owner."""
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)
