"""Users: a taste segment, preferred sector / category / risk level, which domains they use, how much they click.

Each attribute is a pure function of (seed, user id), so any chunk of users can be described without the others.
Segments are what friends share; a user's own preferences follow their segment's most of the time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.synth.catalog import RISK_OFFSETS, category_weights, sector_weights, typical_risk
from training.synth.config import SynthConfig
from training.synth.counter_rng import Stream, below, categorical, uniform
from training.synth.vocab import RISK_LEVELS

FUNDS_ONLY, COUPONS_ONLY, BOTH_DOMAINS = 0, 1, 2
MAX_FRIENDSHIPS_STARTED = 1_000


@dataclass(frozen=True)
class Users:
    """Attributes of a contiguous range of users (arrays aligned with ``ids``)."""

    ids: np.ndarray
    sector: np.ndarray
    category: np.ndarray
    risk: np.ndarray
    mode: np.ndarray  # FUNDS_ONLY, COUPONS_ONLY or BOTH_DOMAINS
    fund_share: np.ndarray  # share of clicks on funds, for users of both domains
    clicks: np.ndarray
    tagger: np.ndarray


def _segment_weights(config: SynthConfig) -> np.ndarray:
    return np.arange(1, config.n_segments + 1, dtype=np.float64) ** -0.6


def segment_tastes(config: SynthConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each segment's sector (every sector has a segment), category and risk level."""
    segments = np.arange(config.n_segments, dtype=np.int64)
    sector = segments % config.n_sectors
    category = categorical(config.seed, Stream.SEGMENT_CATEGORY, category_weights(config), segments)
    offset = categorical(config.seed, Stream.SEGMENT_RISK, RISK_OFFSETS, segments) - 1
    return sector, category, np.clip(typical_risk()[sector] + offset, 0, len(RISK_LEVELS) - 1)


def user_segments(config: SynthConfig, ids: np.ndarray) -> np.ndarray:
    """The taste segment of each user (segment sizes are skewed)."""
    return categorical(config.seed, Stream.USER_SEGMENT, _segment_weights(config), ids)


def _pareto(config: SynthConfig, stream: Stream, ids: np.ndarray, scale: float, alpha: float, cap: int) -> np.ndarray:
    """floor(scale * U^(-1/alpha)) capped at ``cap``: a discrete Pareto, drawn per user."""
    tail = (1.0 - uniform(config.seed, stream, ids)) ** (-1.0 / alpha)
    return np.floor(np.minimum(scale * tail, cap)).astype(np.int64)


def friendships_started(config: SynthConfig, ids: np.ndarray) -> np.ndarray:
    """How many friendships each user starts: a discrete Pareto, so degrees are heavy-tailed (some start none)."""
    cap = min(MAX_FRIENDSHIPS_STARTED, config.n_users - 1) + 1
    return _pareto(config, Stream.USER_FRIENDS, ids, config.friend_scale, config.friend_alpha, cap) - 1


def _follow_segment(
    config: SynthConfig, keep: Stream, ids: np.ndarray, segment_value: np.ndarray, own_value: np.ndarray
) -> np.ndarray:
    """The segment's value for a ``segment_loyalty`` share of users, the user's own draw for the rest."""
    return np.where(uniform(config.seed, keep, ids) < config.segment_loyalty, segment_value, own_value)


def describe_users(config: SynthConfig, ids: np.ndarray) -> Users:
    """Every attribute of the users ``ids``."""
    seed = config.seed
    sector, category, risk = segment_tastes(config)
    segment = user_segments(config, ids)
    own_sector = categorical(seed, Stream.USER_SECTOR, sector_weights(config), ids)
    own_category = categorical(seed, Stream.USER_CATEGORY, category_weights(config), ids)
    own_risk = below(seed, Stream.USER_RISK, len(RISK_LEVELS), ids)
    mode_draw = uniform(seed, Stream.USER_MODE, ids)
    mode = np.where(
        mode_draw < config.both_domains_share,
        BOTH_DOMAINS,
        np.where(mode_draw < config.both_domains_share + config.fund_only_share, FUNDS_ONLY, COUPONS_ONLY),
    )
    clicks = _pareto(config, Stream.USER_CLICKS, ids, config.clicks_min, config.clicks_alpha, config.max_clicks)
    return Users(
        ids=ids,
        sector=_follow_segment(config, Stream.USER_SECTOR_KEEP, ids, sector[segment], own_sector),
        category=_follow_segment(config, Stream.USER_CATEGORY_KEEP, ids, category[segment], own_category),
        risk=_follow_segment(config, Stream.USER_RISK_KEEP, ids, risk[segment], own_risk),
        mode=mode,
        fund_share=0.2 + 0.6 * uniform(seed, Stream.USER_FUND_SHARE, ids),
        clicks=np.maximum(clicks, 1),
        tagger=uniform(seed, Stream.USER_TAGGER, ids) < config.tagger_share,
    )
