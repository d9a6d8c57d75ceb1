"""Names in the synthetic scenario: fund sectors (with their typical risk level), coupon categories, and the tag
words users attach to items of each sector or category (the text a topic model later recovers)."""

from __future__ import annotations

DOMAINS = ("fund", "coupon")
FUND, COUPON = 0, 1
RISK_LEVELS = ("R1", "R2", "R3", "R4", "R5")

# sector -> (index into RISK_LEVELS of its typical fund, tag words)
SECTORS: dict[str, tuple[int, tuple[str, ...]]] = {
    "technology": (4, ("semiconductor", "ai", "cloud", "software", "chips", "5g", "robotics", "internet")),
    "healthcare": (
        3,
        ("biotech", "pharma", "vaccine", "medical-devices", "hospital", "genomics", "elderly-care", "cro"),
    ),
    "consumer": (2, ("liquor", "baijiu", "retail", "household", "food-beverage", "tourism", "apparel", "appliances")),
    "energy": (3, ("new-energy", "solar", "lithium", "ev", "wind-power", "oil", "coal", "battery")),
    "financials": (2, ("banks", "brokerage", "insurance", "fintech", "dividend", "securities", "wealth", "payment")),
    "real_estate": (
        2,
        ("property", "reits", "construction", "housing", "infrastructure", "cement", "developers", "land"),
    ),
    "industrials": (
        2,
        ("manufacturing", "machinery", "defense", "aerospace", "logistics", "shipping", "rail", "automation"),
    ),
    "bonds": (
        1,
        ("bond", "treasury", "credit", "fixed-income", "convertible", "duration", "yield", "low-volatility"),
    ),
    "money_market": (
        0,
        ("cash", "money-market", "liquidity", "yuebao", "savings", "deposit", "short-term", "stable"),
    ),
    "index": (2, ("csi300", "sse50", "index-fund", "etf", "passive", "broad-market", "csi500", "chinext")),
    "esg": (
        2,
        ("esg", "green", "carbon-neutral", "sustainability", "clean-tech", "low-carbon", "environmental", "governance"),
    ),
    "overseas": (
        3,
        ("qdii", "nasdaq", "sp500", "hong-kong", "global-tech", "us-stocks", "emerging-markets", "japan"),
    ),
}

CATEGORIES: dict[str, tuple[str, ...]] = {
    "food_delivery": ("takeaway", "delivery", "lunch", "milk-tea", "fast-food", "late-night", "meal-deal", "noodles"),
    "groceries": (
        "supermarket",
        "fresh",
        "vegetables",
        "fruit",
        "daily-goods",
        "convenience-store",
        "bulk-buy",
        "snacks",
    ),
    "dining": ("restaurant", "hotpot", "buffet", "cafe", "bbq", "dessert", "family-dinner", "seafood"),
    "travel": ("flight", "hotel", "train-ticket", "vacation", "scenic-spot", "airport", "resort", "booking"),
    "transport": ("metro", "bus", "taxi", "ride-hailing", "bike-share", "parking", "fuel", "highway-toll"),
    "entertainment": ("movie", "cinema", "ktv", "game", "streaming", "concert", "theme-park", "music"),
    "fashion": ("clothing", "shoes", "cosmetics", "skincare", "handbag", "sportswear", "jewelry", "outlet"),
    "electronics": ("phone", "laptop", "earbuds", "smart-home", "camera", "tablet", "gadgets", "charger"),
    "health": ("pharmacy", "checkup", "fitness", "gym", "dental", "vitamins", "clinic", "wellness"),
    "utilities": (
        "electricity",
        "water-bill",
        "gas-bill",
        "phone-topup",
        "broadband",
        "utility",
        "mobile-data",
        "recharge",
    ),
}


def topic_words() -> list[tuple[str, ...]]:
    """Tag words per topic: topics 0..len(SECTORS)-1 are the sectors, the rest the coupon categories, in order."""
    return [words for _, words in SECTORS.values()] + list(CATEGORIES.values())
