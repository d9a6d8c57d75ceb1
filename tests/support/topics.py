"""A small dataset with tags for the topic-model tests: the seeded genre dataset of tests/support/datasets.py, whose
items carry words of their genre and whose users befriend users of the same taste."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from tests.support.datasets import synthetic_dataset
from training.data.dataset import Dataset, undirected_pairs

GENRE_WORDS = (
    ("rock", "guitar", "loud", "riff"),
    ("jazz", "swing", "sax", "bebop"),
    ("ambient", "calm", "drone", "chill"),
    ("hiphop", "rap", "beats", "flow"),
)


def tagged_dataset(n_users: int = 40, seed: int = 0) -> Dataset:
    """The genre dataset plus tags (every user tags each positive with two words of the item's genre) and
    friendships only within a taste (the genre of the user's first positive), each pair with chance 0.3."""
    dataset = synthetic_dataset(n_users=n_users, seed=seed)
    rng = np.random.default_rng(seed)
    genres = dataset.kg[dataset.kg["relation"] == 0].sort_values("head")["tail"].to_numpy() - dataset.n_items
    positives = dataset.positives
    rows = []
    for user, item in zip(positives["user"], positives["item"], strict=True):
        for word in rng.choice(GENRE_WORDS[genres[item]], size=2, replace=False):
            rows.append((user, item, str(word)))
    tags = pd.DataFrame(rows, columns=["user", "item", "tag"]).drop_duplicates().assign(timestamp=1_700_000_000)
    taste = positives.groupby("user")["item"].first().map(lambda item: genres[item]).reindex(range(n_users))
    pairs = [
        (u, v) for u in range(n_users) for v in range(u + 1, n_users) if taste[u] == taste[v] and rng.random() < 0.3
    ]
    social = undirected_pairs(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
    return replace(dataset, tags=tags.reset_index(drop=True), social=social)
