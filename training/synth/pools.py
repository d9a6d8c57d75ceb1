"""Where clicks come from: per-pool item distributions, packed so one ``searchsorted`` samples a whole chunk at once.

Pools are, in order: one per (sector, preferred risk level) over that sector's funds, popularity-weighted and damped
by risk distance; one per coupon category over its coupons; then all funds and all coupons by popularity alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.synth.catalog import Catalog
from training.synth.config import SynthConfig
from training.synth.vocab import COUPON, FUND, RISK_LEVELS


@dataclass(frozen=True)
class Pools:
    """Pool p holds positions ``[ends[p-1], ends[p])`` of ``items``; ``bounds`` there are p + its cumulative shares."""

    bounds: np.ndarray
    items: np.ndarray
    ends: np.ndarray
    n_sectors: int
    n_categories: int

    def fund_taste(self, sector: np.ndarray, risk: np.ndarray) -> np.ndarray:
        """Pool of funds in ``sector`` favouring risk level ``risk``."""
        return sector * len(RISK_LEVELS) + risk

    def coupon_taste(self, category: np.ndarray) -> np.ndarray:
        """Pool of coupons in ``category``."""
        return self.n_sectors * len(RISK_LEVELS) + category

    @property
    def all_funds(self) -> int:
        """Pool of every fund, by popularity."""
        return self.n_sectors * len(RISK_LEVELS) + self.n_categories

    @property
    def all_coupons(self) -> int:
        """Pool of every coupon, by popularity."""
        return self.all_funds + 1

    def sample(self, pool: np.ndarray, u: np.ndarray) -> np.ndarray:
        """One item per (pool, uniform in [0, 1)) pair, by inverse CDF within the pool."""
        positions = np.searchsorted(self.bounds, pool + u, side="right")
        return self.items[np.minimum(positions, self.ends[pool] - 1)]


def build_pools(config: SynthConfig, catalog: Catalog) -> Pools:
    """The click pools of ``catalog``; every pool is non-empty because every sector and category has items."""
    members: list[tuple[np.ndarray, np.ndarray]] = []
    is_fund = catalog.domain == FUND
    for sector in range(config.n_sectors):
        funds = np.flatnonzero(is_fund & (catalog.topic == sector))
        for risk in range(len(RISK_LEVELS)):
            damping = config.risk_affinity ** np.abs(catalog.risk[funds] - risk)
            members.append((funds, catalog.popularity[funds] * damping))
    for category in range(config.n_categories):
        coupons = np.flatnonzero(catalog.topic == config.n_sectors + category)
        members.append((coupons, catalog.popularity[coupons]))
    for domain in (FUND, COUPON):
        items = np.flatnonzero(catalog.domain == domain)
        members.append((items, catalog.popularity[items]))
    bounds = []
    for pool, (_, weights) in enumerate(members):
        share = np.cumsum(weights) / weights.sum()
        share[-1] = 1.0
        bounds.append(pool + share)
    return Pools(
        bounds=np.concatenate(bounds),
        items=np.concatenate([items for items, _ in members]),
        ends=np.cumsum([len(items) for items, _ in members]),
        n_sectors=config.n_sectors,
        n_categories=config.n_categories,
    )
