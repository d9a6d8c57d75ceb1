"""The item catalogue and its knowledge graph: funds (manager, sector, risk level) and coupons (merchant, category).

Entities are laid out as items 0..n_items-1, then managers, sectors, risk levels, merchants and coupon categories.
A manager runs funds of one sector, and a coupon's category is its merchant's, so the KG carries consistent structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.synth.config import SynthConfig
from training.synth.counter_rng import Stream, below, categorical, uniform
from training.synth.vocab import COUPON, FUND, RISK_LEVELS, SECTORS

RELATION_NAMES = (
    "fund.manager",
    "fund.sector",
    "fund.risk_level",
    "coupon.merchant",
    "coupon.category",
    "merchant.category",
)
FUND_MANAGER, FUND_SECTOR, FUND_RISK, COUPON_MERCHANT, COUPON_CATEGORY, MERCHANT_CATEGORY = range(len(RELATION_NAMES))
PATH_RELATIONS = (FUND_MANAGER, COUPON_MERCHANT)  # KG-driven clicks follow item -> manager / merchant -> item
RISK_OFFSETS = np.array([0.25, 0.5, 0.25])  # a fund's risk level is its sector's typical level -1, +0 or +1


@dataclass(frozen=True)
class Catalog:
    """Per-item attributes (arrays indexed by item id) and the KG triples that state them."""

    domain: np.ndarray  # FUND or COUPON
    topic: np.ndarray  # sector for funds, n_sectors + category for coupons
    risk: np.ndarray  # index into RISK_LEVELS for funds, -1 for coupons
    popularity: np.ndarray  # Zipf weight by a random rank
    path_entity: np.ndarray  # entity id of a fund's manager or a coupon's merchant (the hub of a KG-driven click)
    kg: pd.DataFrame
    entity_types: dict[str, tuple[int, int]]  # type -> [first, last + 1) entity id

    @property
    def n_entities(self) -> int:
        """All KG entities, items included."""
        return max(stop for _, stop in self.entity_types.values())


def sector_weights(config: SynthConfig) -> np.ndarray:
    """How common each sector is among managers (and users' tastes): mildly skewed towards the first."""
    return np.arange(1, config.n_sectors + 1, dtype=np.float64) ** -0.5


def category_weights(config: SynthConfig) -> np.ndarray:
    """How common each coupon category is among merchants (and users' tastes): mildly skewed."""
    return np.arange(1, config.n_categories + 1, dtype=np.float64) ** -0.5


def typical_risk() -> np.ndarray:
    """Index into RISK_LEVELS of each sector's typical fund."""
    return np.array([risk for risk, _ in SECTORS.values()], dtype=np.int64)


def _entity_types(config: SynthConfig) -> dict[str, tuple[int, int]]:
    sizes = {
        "item": config.n_items,
        "manager": config.n_managers,
        "sector": config.n_sectors,
        "risk_level": len(RISK_LEVELS),
        "merchant": config.n_merchants,
        "category": config.n_categories,
    }
    bounds, start = {}, 0
    for name, size in sizes.items():
        bounds[name] = (start, start + size)
        start += size
    return bounds


def _covering(seed: int, stream: Stream, n: int, n_targets: int, weights: np.ndarray | None = None) -> np.ndarray:
    """A target for each of n members: member k < n_targets gets target k (so every target is used), the rest draw."""
    members = np.arange(n, dtype=np.int64)
    drawn = below(seed, stream, n_targets, members) if weights is None else categorical(seed, stream, weights, members)
    return np.where(members < n_targets, members, drawn)


def _triples(head: np.ndarray, relation: int, tail: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"head": head, "relation": np.full(len(head), relation, dtype=np.int64), "tail": tail})


def build_catalog(config: SynthConfig) -> Catalog:
    """Draw every item's domain, attributes and popularity, and the KG triples stating them (each exactly once)."""
    seed, n_items = config.seed, config.n_items
    items = np.arange(n_items, dtype=np.int64)
    order = np.argsort(uniform(seed, Stream.ITEM_ORDER, items), kind="stable")
    funds, coupons = order[: config.n_funds], order[config.n_funds :]
    rank = np.empty(n_items, dtype=np.float64)
    rank[np.argsort(uniform(seed, Stream.ITEM_POPULARITY, items), kind="stable")] = np.arange(1, n_items + 1)

    manager_sector = _covering(seed, Stream.MANAGER_SECTOR, config.n_managers, config.n_sectors, sector_weights(config))
    fund_manager = _covering(seed, Stream.FUND_MANAGER, config.n_funds, config.n_managers)
    fund_sector = manager_sector[fund_manager]
    offset = categorical(seed, Stream.FUND_RISK, RISK_OFFSETS, np.arange(config.n_funds)) - 1
    fund_risk = np.clip(typical_risk()[fund_sector] + offset, 0, len(RISK_LEVELS) - 1)

    merchant_category = _covering(
        seed, Stream.MERCHANT_CATEGORY, config.n_merchants, config.n_categories, category_weights(config)
    )
    coupon_merchant = _covering(seed, Stream.COUPON_MERCHANT, config.n_coupons, config.n_merchants)
    coupon_category = merchant_category[coupon_merchant]

    domain = np.full(n_items, FUND, dtype=np.int64)
    domain[coupons] = COUPON
    topic = np.empty(n_items, dtype=np.int64)
    topic[funds], topic[coupons] = fund_sector, config.n_sectors + coupon_category
    risk = np.full(n_items, -1, dtype=np.int64)
    risk[funds] = fund_risk

    types = _entity_types(config)
    first = {name: start for name, (start, _) in types.items()}
    path_entity = np.empty(n_items, dtype=np.int64)
    path_entity[funds], path_entity[coupons] = first["manager"] + fund_manager, first["merchant"] + coupon_merchant
    merchants = np.arange(config.n_merchants, dtype=np.int64)
    kg = pd.concat(
        [
            _triples(funds, FUND_MANAGER, first["manager"] + fund_manager),
            _triples(funds, FUND_SECTOR, first["sector"] + fund_sector),
            _triples(funds, FUND_RISK, first["risk_level"] + fund_risk),
            _triples(coupons, COUPON_MERCHANT, first["merchant"] + coupon_merchant),
            _triples(coupons, COUPON_CATEGORY, first["category"] + coupon_category),
            _triples(first["merchant"] + merchants, MERCHANT_CATEGORY, first["category"] + merchant_category),
        ],
        ignore_index=True,
    )
    kg = kg.sort_values(["head", "relation"], kind="stable", ignore_index=True)
    return Catalog(domain, topic, risk, rank**-config.item_zipf, path_entity, kg, types)
