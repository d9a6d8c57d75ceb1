"""The online loop's test world: a planted better challenger beside a random champion, served over real HTTP.

The data is ``synthetic_dataset`` (users like the items of one genre). The champion is a dot model with random
embeddings; the challenger is planted from the data's own preference model: a user's embedding is the one-hot of the
genre of their training positives, an item's the one-hot of its genre (plus noise to break ties), so it ranks each
user's genre, where their held-out positives are, first.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
from fastapi import FastAPI

from graphrec.settings import Settings
from graphrec.testing import free_port, wait_until
from serving.contract import CHALLENGER, CHAMPION
from serving.pyfunc_model import ITEM_ID, USER_ID
from tests.support.serving import PublishedVersion, dot_tables, popularity_table, publish_dot_version
from training.data.dataset import Dataset
from training.data.splits import make_split

GENRE_RELATION = 0  # synthetic_dataset's first relation links each item to its genre entity


def planted_tables(dataset: Dataset, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """User and item tables of the planted model: genre one-hots from the KG and the training positives."""
    kg = dataset.kg[dataset.kg["relation"] == GENRE_RELATION].sort_values("head")
    item_genre = kg["tail"].to_numpy() - dataset.n_items
    n_genres = int(item_genre.max()) + 1
    positives = make_split(dataset.interactions, seed).train_positives()
    votes = np.zeros((dataset.n_users, n_genres), dtype=np.float32)
    np.add.at(votes, (positives["user"].to_numpy(), item_genre[positives["item"].to_numpy()]), 1.0)
    rng = np.random.default_rng(seed)
    items = np.eye(n_genres, dtype=np.float32)[item_genre] + rng.normal(0, 0.01, (dataset.n_items, n_genres))
    users = pd.DataFrame({USER_ID: np.arange(dataset.n_users, dtype=np.int64), "embedding": list(votes)})
    item_table = pd.DataFrame(
        {
            ITEM_ID: np.arange(dataset.n_items, dtype=np.int64),
            "embedding": list(items.astype(np.float32)),
            "bias": np.zeros(dataset.n_items, dtype=np.float32),
        }
    )
    return users, item_table


def publish_ab_world(settings: Settings, dataset: Dataset) -> tuple[PublishedVersion, PublishedVersion]:
    """The random champion (with the shared popularity view) and the planted challenger."""
    users, items = dot_tables(dataset.n_users, dataset.n_items, 4, seed=7)
    champion = publish_dot_version(settings, users, items, popularity_table(items[ITEM_ID].to_numpy(), seed=0))
    challenger = publish_dot_version(settings, *planted_tables(dataset, settings.seed), alias=CHALLENGER)
    assert champion.version != challenger.version and CHAMPION != CHALLENGER
    return champion, challenger


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port in a thread of this process; yields its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="online-loop-server", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 60, "the online-loop test server")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
