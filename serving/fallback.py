"""Fallback ranking when the model cannot score: popularity from the shared ``item_graph_stats`` view.

Candidates of a request are typically an item's KG neighbourhood, so ranking them by popularity is "popularity within
the neighbourhood". Fallback scores are ``log1p(popularity)``; without the stats view (or for an item it lacks) every
popularity is 0 and the order is the request order (a stable sort), the constant global order.
"""

from __future__ import annotations

import numpy as np

from serving.features import ItemTable

UNKNOWN_USER = "unknown_user"
ITEMS_WITHOUT_FEATURES = "items_without_features"
POPULARITY = "popularity"


def popularity_scores(stats: ItemTable | None, item_ids: np.ndarray) -> np.ndarray:
    """Fallback score of each item: log1p of its popularity, 0 when unknown."""
    scores = np.zeros(len(item_ids), dtype=np.float32)
    if stats is None or not len(stats):
        return scores
    index, found = stats.locate(item_ids)
    scores[found] = np.log1p(stats.columns[POPULARITY][index[found]].astype(np.float32))
    return scores


def most_popular(stats: ItemTable | None, candidates: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` most popular of ``candidates`` (ties and unknown popularity keep the candidates' order)."""
    order = np.argsort(-popularity_scores(stats, candidates), kind="stable")
    return candidates[order[:k]]
