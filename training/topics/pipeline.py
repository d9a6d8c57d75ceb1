"""One fit from a dataset: the documents and graph of the training split's positives, then the topic model.

``graphrec topics train`` and ``graphrec features build --only intent`` both call :func:`fit_user_intent`, so the
mixture served from Feast is the one the topic commands show."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from training.data.dataset import Dataset
from training.topics.config import TopicConfig
from training.topics.documents import Documents, build_documents
from training.topics.fit import TopicFit, fit_topics
from training.topics.graph import intent_graph


def fit_user_intent(
    dataset: Dataset,
    positives: pd.DataFrame,
    held_out: pd.DataFrame,
    config: TopicConfig,
    as_of: int | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[Documents, TopicFit]:
    """Fit the topic model on the training ``positives`` and the tags not after ``as_of``; tag rows on
    ``held_out`` (user, item) pairs (the split's validation and test rows) never enter a document."""
    documents = build_documents(dataset, positives, config, as_of=as_of, exclude_pairs=held_out)
    graph = intent_graph(dataset, positives)
    return documents, fit_topics(documents, graph, config, on_epoch=on_epoch)


def intent_columns(theta: np.ndarray) -> dict[str, np.ndarray]:
    """The user_intent view's feature columns from the (n_users, K) mixture: θ, the dominant topic, its weight."""
    return {
        "theta": theta.astype(np.float32),
        "dominant_topic": theta.argmax(axis=1).astype(np.int64),
        "dominant_weight": theta.max(axis=1).astype(np.float32),
    }
