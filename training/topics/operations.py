"""What operations read from a fitted topic model: a summary of every topic, and the audience of one topic; the
mixtures can be the ones the feature store serves (:func:`with_served_mixture`), the topics' tags come from the fit."""

from __future__ import annotations

from dataclasses import dataclass, replace

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


def with_served_mixture(saved: SavedTopics, served: pd.DataFrame, where: str) -> SavedTopics:
    """The fit with its mixtures replaced by the ``theta`` column of ``served`` (one row per user of the fit, in user
    order, as read from the store named by ``where``), so operations see what is served; TopicInputError when a user
    has no served mixture or the served mixtures have another number of topics than the fit's tags describe."""
    missing = served["user_id"][served["theta"].isna()].to_numpy()
    if len(missing):
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise TopicInputError(
            f"{len(missing):,} of {len(served):,} users (user_id {shown}) have no user_intent mixture in the {where}: "
            "run `graphrec features build --only intent` and `graphrec features materialize`, or read the fit itself "
            "with --source fit"
        )
    theta = np.stack(served["theta"].to_numpy()).astype(np.float32)
    if theta.shape != saved.theta.shape:
        raise TopicInputError(
            f"the {where} serves {theta.shape[1]} topics per user but the saved fit ({saved.dataset}) has "
            f"{saved.n_topics}: the fit was replaced after the view was built; rebuild the view "
            "(`graphrec features build --only intent`, then materialize) or read the fit with --source fit"
        )
    return replace(saved, theta=theta)
