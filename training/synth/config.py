"""The generator's settings: population size and seed, plus the knobs that shape activity, tastes and friendships."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from training.synth.vocab import CATEGORIES, SECTORS

MIN_ITEMS, MAX_ITEMS = 200, 200_000


def _derived_items(n_users: int) -> int:
    return min(max(n_users // 10, MIN_ITEMS), MAX_ITEMS)


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Only ``n_users`` is required; ``n_items`` 0 means clip(n_users / 10, 200, 200,000).

    ``chunk_users`` bounds memory only: the files are byte-identical for any chunk size.
    """

    n_users: int
    seed: int = 0
    n_items: int = 0
    chunk_users: int = 50_000
    name: str = "synthetic-alipay"
    fund_share: float = 0.4  # share of items that are funds (the rest are coupons)
    both_domains_share: float = 0.25  # users active in both domains
    fund_only_share: float = 0.4  # users active in funds only (the rest use coupons only)
    clicks_min: float = 3.0  # Pareto x_min of a user's clicks: the median user clicks a handful of items
    clicks_alpha: float = 1.3  # Pareto tail index of clicks per user (smaller: heavier tail)
    clicks_cap: int = 1_000  # most clicks of one user (also at most n_items / 4)
    item_zipf: float = 0.9  # exponent of item popularity by rank
    taste_strength: float = 0.75  # share of clicks drawn from the user's preferred sector / category
    segment_loyalty: float = 0.85  # chance a user's preferred sector (and category) is their segment's
    risk_affinity: float = 0.35  # popularity factor per risk level away from the user's preferred level
    friend_homophily: float = 0.8  # chance a friendship a user starts is within their taste segment
    friend_scale: float = 1.9  # scale of the Pareto number of friendships a user starts
    friend_alpha: float = 1.8  # tail index of friendships started per user
    tagger_share: float = 0.1  # users who write tags
    tag_rate: float = 0.3  # chance a tagger tags one of their positives
    kg_driven_share: float = 0.0  # chance a click (after a user's first) follows a KG path from an item they hold

    def __post_init__(self) -> None:
        if self.n_items == 0:
            object.__setattr__(self, "n_items", _derived_items(self.n_users))
        problems = []
        if self.n_users < 2:
            problems.append(f"n_users must be at least 2, got {self.n_users}")
        if not 0 <= self.seed < 2**63:
            problems.append(f"seed must be in [0, 2**63), got {self.seed}")
        if self.n_funds < self.n_sectors or self.n_coupons < self.n_categories:
            problems.append(
                f"n_items={self.n_items} with fund_share={self.fund_share} leaves too few funds or coupons "
                f"(need at least {self.n_sectors} funds and {self.n_categories} coupons)"
            )
        if self.chunk_users < 1 or self.clicks_cap < 1:
            problems.append("chunk_users and clicks_cap must be positive")
        shares = (
            "fund_share",
            "both_domains_share",
            "fund_only_share",
            "taste_strength",
            "segment_loyalty",
            "risk_affinity",
            "friend_homophily",
            "tagger_share",
            "tag_rate",
            "kg_driven_share",
        )
        problems += [f"{name} must lie in [0, 1]" for name in shares if not 0 <= getattr(self, name) <= 1]
        if self.both_domains_share + self.fund_only_share > 1:
            problems.append("both_domains_share + fund_only_share must not exceed 1")
        positive = ("clicks_min", "clicks_alpha", "friend_scale", "friend_alpha", "item_zipf", "risk_affinity")
        problems += [f"{name} must be positive" for name in positive if getattr(self, name) <= 0]
        if problems:
            raise ValueError("invalid SynthConfig: " + "; ".join(problems))

    @property
    def n_funds(self) -> int:
        """Items that are funds."""
        return round(self.n_items * self.fund_share)

    @property
    def n_coupons(self) -> int:
        """Items that are coupons."""
        return self.n_items - self.n_funds

    @property
    def n_sectors(self) -> int:
        """Fund sectors (fixed vocabulary)."""
        return len(SECTORS)

    @property
    def n_categories(self) -> int:
        """Coupon categories (fixed vocabulary)."""
        return len(CATEGORIES)

    @property
    def n_managers(self) -> int:
        """Fund managers: about eight funds each, at least one per sector."""
        return max(self.n_sectors, self.n_funds // 8)

    @property
    def n_merchants(self) -> int:
        """Merchants: about five coupons each, at least one per category."""
        return max(self.n_categories, self.n_coupons // 5)

    @property
    def n_segments(self) -> int:
        """Taste segments users belong to; friendships form mostly within a segment."""
        return 2 * self.n_sectors

    @property
    def max_clicks(self) -> int:
        """Cap on one user's clicks, so a user's positives and negatives always fit in the catalogue."""
        return min(self.clicks_cap, self.n_items // 4)

    def provenance(self) -> dict[str, object]:
        """The settings that determine the output, for dataset.json.

        ``chunk_users`` does not; ``kg_driven_share`` is left out at 0, so datasets generated before the knob existed
        keep their bytes and fingerprint.
        """
        unused = {"chunk_users"} | ({"kg_driven_share"} if self.kg_driven_share == 0 else set())
        return {key: value for key, value in asdict(self).items() if key not in unused}
