"""Small in-memory datasets for tests: a hand-checkable tiny one and a seeded synthetic one with a genre signal."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.data.dataset import Dataset


def tiny_dataset() -> Dataset:
    """6 users, 5 items (entities 0-4) plus 3 attribute entities, 2 relations: small enough to reason about."""
    interactions = pd.DataFrame(
        {
            "user": [0, 0, 1, 1, 2, 2, 3, 4, 5, 5],
            "item": [0, 1, 1, 2, 2, 3, 4, 0, 3, 4],
            "label": [1, 0, 1, 1, 1, 0, 1, 1, 1, 0],
            "timestamp": np.arange(10, dtype=np.int64) + 1_700_000_000,
        }
    )
    kg = pd.DataFrame({"head": [0, 1, 2, 3, 4, 0], "relation": [0, 0, 0, 1, 1, 1], "tail": [5, 5, 6, 7, 7, 6]})
    social = pd.DataFrame({"user": [0, 1, 2, 3], "friend": [1, 2, 3, 5]})
    tags = pd.DataFrame({"user": [0, 1], "item": [0, 1], "tag": ["rock", "jazz"], "timestamp": [1, 2]})
    return Dataset(
        name="tiny",
        n_users=6,
        n_items=5,
        n_entities=8,
        n_relations=2,
        interactions=interactions,
        kg=kg,
        social=social,
        tags=tags,
        relation_names=["genre", "label"],
    )


def synthetic_dataset(
    n_users: int = 40, n_items: int = 30, n_attributes: int = 12, seed: int = 0, positives: tuple[int, int] = (1, 6)
) -> Dataset:
    """Users who like items of 'their' genre (an attribute entity), between ``positives`` (inclusive) liked items
    each, 1:1 sampled negatives, 2 KG relations (genre and a random label)."""
    rng = np.random.default_rng(seed)
    genre = rng.integers(0, 4, n_items)
    taste = rng.integers(0, 4, n_users)
    rows = []
    for user in range(n_users):
        liked = np.flatnonzero(genre == taste[user])
        count = min(len(liked), int(rng.integers(positives[0], positives[1] + 1)))
        chosen = rng.choice(liked, size=count, replace=False)
        negatives = rng.choice(np.setdiff1d(np.arange(n_items), chosen), size=len(chosen), replace=False)
        rows += [(user, i, 1) for i in chosen] + [(user, i, 0) for i in negatives]
    interactions = pd.DataFrame(rows, columns=["user", "item", "label"]).assign(timestamp=1_700_000_000)
    heads = np.r_[np.arange(n_items), np.arange(n_items)]
    tails = np.r_[n_items + genre, n_items + 4 + rng.integers(0, n_attributes - 4, n_items)]
    kg = pd.DataFrame({"head": heads, "relation": np.repeat([0, 1], n_items), "tail": tails})
    return Dataset(
        name="synthetic",
        n_users=n_users,
        n_items=n_items,
        n_entities=n_items + n_attributes,
        n_relations=2,
        interactions=interactions,
        kg=kg,
        social=pd.DataFrame({"user": [0, 1], "friend": [1, 2]}),
        relation_names=["genre", "label"],
    )
