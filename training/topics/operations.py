"""What operations read from a fitted topic model: a summary of every topic, and the audience of one topic."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.data.splits import TERCILE_NAMES
from training.topics.artefacts import SavedTopics
from training.topics.errors import TopicInputError

SPARSE = 0


@dataclass(frozen=True)
class TopicSummary:
    """One topic as operations see it."""

    topic: int
    top_words: list[str]
    size: int  # users whose dominant topic it is
    mass: float  # mean θ_k over all users: the topic's share of all intent
    sparse_share: float  # share of its dominant users in the sparsest activity tercile (NaN for an empty topic)


def summarise(saved: SavedTopics, n_words: int) -> list[TopicSummary]:
    """Every topic's top tags, size, share of all intent and share of sparse users, in topic order."""
    dominant = saved.theta.argmax(axis=1)
    summaries = []
    for k, words in enumerate(saved.top_words(n_words)):
        members = dominant == k
        sparse = float((saved.terciles[members] == SPARSE).mean()) if members.any() else float("nan")
        summaries.append(TopicSummary(k, words, int(members.sum()), float(saved.theta[:, k].mean()), sparse))
    return summaries


def audience(saved: SavedTopics, topic: int, top: int) -> pd.DataFrame:
    """The ``top`` users with the largest θ_topic (ties by user id): user_id, theta, rank of the topic in the
    user's mixture (1 = dominant), and activity tercile."""
    if not 0 <= topic < saved.n_topics:
        raise TopicInputError(
            f"--topic {topic} is out of range: the model has {saved.n_topics} topics, 0 to {saved.n_topics - 1}"
        )
    if top < 1:
        raise TopicInputError(f"--top must be at least 1, got {top}")
    weights = saved.theta[:, topic]
    order = np.lexsort((np.arange(len(weights)), -weights))[:top]
    rank = (saved.theta[order] > weights[order, None]).sum(axis=1) + 1
    return pd.DataFrame(
        {
            "user_id": order.astype(np.int64),
            "theta": weights[order].astype(np.float64),
            "topic_rank": rank.astype(np.int64),
            "activity_tercile": [TERCILE_NAMES[t] for t in saved.terciles[order]],
        }
    )
