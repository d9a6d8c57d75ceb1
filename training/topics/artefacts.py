"""A fitted topic model on disk (``<work>/topics/``): what ``topics show`` and ``topics audience`` read, and what
``topics train`` logs to MLflow. Plain npz + JSON, no pickle."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.topics.config import TopicConfig
from training.topics.errors import TopicInputError
from training.topics.fit import TopicFit

FOLDER = "topics"
ARRAYS = "topics.npz"
META = "topics.json"


@dataclass(frozen=True)
class SavedTopics:
    """A fitted model as saved: the mixtures, topic-word distributions, vocabulary and each user's activity tercile."""

    config: TopicConfig
    tokens: tuple[str, ...]
    theta: np.ndarray  # (n_users, K)
    beta: np.ndarray  # (K, V)
    terciles: np.ndarray  # (n_users,) 0 sparse, 1 medium, 2 active
    dataset: str
    dataset_fingerprint: str

    @property
    def n_topics(self) -> int:
        """K."""
        return self.theta.shape[1]

    def top_words(self, n: int) -> list[list[str]]:
        """The ``n`` most probable tokens of every topic."""
        order = np.argsort(-self.beta, axis=1, kind="stable")[:, :n]
        return [[self.tokens[j] for j in row] for row in order]


def topics_dir(work_dir: Path) -> Path:
    """Where the latest fit of a work dir lives."""
    return work_dir / FOLDER


def save_topics(folder: Path, fit: TopicFit, terciles: np.ndarray, dataset: str, fingerprint: str) -> Path:
    """Write the fit under ``folder`` (replacing an older one file by file, each written then renamed)."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "config": fit.config.model_dump(),
        "tokens": list(fit.vocabulary.tokens),
        "top_words": fit.top_words(fit.config.top_words),
        "dataset": dataset,
        "dataset_fingerprint": fingerprint,
        "final_loss": fit.history[-1]["loss"] if fit.history else None,
    }
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".npz", delete=False) as handle:
        np.savez(handle, theta=fit.theta, beta=fit.beta, terciles=terciles.astype(np.int64))
    os.replace(handle.name, folder / ARRAYS)
    with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".json", delete=False) as text:
        json.dump(meta, text, indent=1)
    os.replace(text.name, folder / META)
    return folder


def load_topics(folder: Path) -> SavedTopics:
    """The fit saved under ``folder``; TopicInputError naming the command to run when there is none."""
    if not (folder / ARRAYS).exists() or not (folder / META).exists():
        raise TopicInputError(f"no fitted topic model under {folder}: run `graphrec topics train` first")
    meta = json.loads((folder / META).read_text())
    with np.load(folder / ARRAYS) as arrays:
        theta, beta, terciles = arrays["theta"], arrays["beta"], arrays["terciles"]
    return SavedTopics(
        config=TopicConfig(**meta["config"]),
        tokens=tuple(meta["tokens"]),
        theta=theta,
        beta=beta,
        terciles=terciles,
        dataset=meta["dataset"],
        dataset_fingerprint=meta["dataset_fingerprint"],
    )
