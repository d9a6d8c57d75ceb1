"""The one interface every recommender implements, its typed config, and the registry models join by name.

A model module defines ``class MyModel(Recommender)`` with ``name`` and ``Config`` and decorates it with
``@register_model``; the training loop, evaluation harness and CLI find it through :data:`MODELS` — adding a model
never edits a central switch. Model modules are discovered by :func:`load_models` (every module in this package).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict

from training.data.dataset import Dataset
from training.data.splits import Split
from training.graphs.ckg import CollaborativeKG
from training.models.optimizers import SparseRowsAdam


class ModelConfig(BaseModel):
    """Hyper-parameters shared by every model; subclasses add their own fields with defaults."""

    model_config = ConfigDict(extra="forbid")

    dim: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 1024
    epochs: int = 50
    patience: int = 5  # epochs without validation-AUC improvement before early stopping


@dataclass(frozen=True)
class TrainingData:
    """What a model may see: the dataset, the split, and the CKG built from *training positives only*."""

    dataset: Dataset
    split: Split
    ckg: CollaborativeKG
    terciles: np.ndarray  # activity tercile per user (0 sparse .. 2 active), from training positives

    @property
    def train_positives(self) -> pd.DataFrame:
        """Training rows labelled 1."""
        return self.split.train_positives()

    @functools.cached_property
    def user_intent(self) -> np.ndarray:
        """Each user's intent mixture θ_u, (n_users, K) float32 rows summing to 1: the intent topic model
        (training.topics, default settings) fitted on this split's training positives, with no tag of a validation or
        test pair in any document. Fitted on first use (minutes on Last.FM), shared by every model built on this data,
        and without disturbing torch's global random state (the model's seeded initialisation stays the same)."""
        from training.topics.config import TopicConfig  # the topic stack (gensim, its GNN) only when a model asks
        from training.topics.pipeline import fit_user_intent

        held_out = pd.concat([self.split.valid, self.split.test])[["user", "item"]]
        with torch.random.fork_rng():
            _, fitted = fit_user_intent(self.dataset, self.train_positives, held_out, TopicConfig())
        return fitted.theta


@dataclass(frozen=True)
class Batch:
    """A mini-batch of labelled (user, item) rows."""

    users: torch.Tensor
    items: torch.Tensor
    labels: torch.Tensor


@dataclass
class ServingExport:
    """A model's serving form: per-entity feature tables (for Feast) and a scorer that needs only those features.

    ``user_features`` / ``item_features`` have a ``user_id`` / ``item_id`` column plus one column per feature
    (scalars or equal-length float32 arrays). ``scorer_kind`` names a scorer in ``serving.scoring`` and
    ``scorer_state`` holds its tensors/hyper-parameters; ``scorer(user_rows, item_rows)`` must equal the trained
    model's ``predict_logits`` on the same pairs.
    """

    user_features: pd.DataFrame
    item_features: pd.DataFrame
    scorer_kind: str
    scorer_state: dict[str, object]


class Recommender(torch.nn.Module, ABC):
    """A CTR recommender trained on labelled (user, item) rows; scores are logits."""

    name: ClassVar[str]
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    # The model's own ablations: a short name → the config fields that switch one part off (``graphrec evaluate
    # --ablations`` runs each beside the full model, under the same config, regimes and seeds).
    ablations: ClassVar[dict[str, dict[str, object]]] = {}
    # Optional parts the model can add, named ``with …`` (``graphrec evaluate --extensions`` runs each beside the full
    # model, paired by seed, the way ablations are run).
    extensions: ClassVar[dict[str, dict[str, object]]] = {}

    def __init__(self, config: ModelConfig, data: TrainingData):
        super().__init__()
        self.config = config

    @abstractmethod
    def training_loss(self, batch: Batch) -> torch.Tensor | tuple[Callable[[], torch.Tensor], ...]:
        """The loss of one mini-batch (models may sample their own negatives or add auxiliary losses), or a tuple of
        functions computing losses that the trainer minimises one optimizer step after another, each computed after
        the previous step (an alternating schedule)."""

    @abstractmethod
    def predict_logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits for aligned (user, item) pairs, in eval mode; shape (B,)."""

    def on_epoch_start(self, epoch: int) -> None:
        """Hook for models with per-epoch work (e.g. recomputing attention); default: nothing."""

    def generator_states(self) -> dict[str, torch.Tensor]:
        """States of the random generators the model owns besides torch's and numpy's global ones (e.g. a negative
        sampler's), saved with a resumable fit so a resumed fit draws what an uninterrupted one would; default: none."""
        return {}

    def restore_generators(self, states: dict[str, torch.Tensor]) -> None:
        """Set the model's own generators to states from :meth:`generator_states`."""

    def make_optimizer(self) -> torch.optim.Optimizer | SparseRowsAdam:
        """What the trainer steps: Adam over every parameter with the config's ``lr`` and ``weight_decay``. A model
        whose node tables get sparse row gradients returns a :class:`SparseRowsAdam` instead."""
        return torch.optim.Adam(self.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)

    @abstractmethod
    def export_serving(self) -> ServingExport:
        """The serving form: feature tables + scorer (see :class:`ServingExport`)."""

    def diagnostics(self, data: TrainingData) -> dict[str, float]:
        """Flat ``group/name`` numbers that show whether the trained model's parts do work, computed once after
        training; default: how personal its rankings are (``personal/*``, see training.evaluation.diagnostics).
        Models with attention or distillation add their own keys to these."""
        from training.evaluation.diagnostics import model_personalisation  # evaluation imports this module

        return model_personalisation(self, data)


def intent_projection(data: TrainingData, dim: int) -> torch.nn.Linear:
    """The learned map W (K → ``dim``) of a user's intent mixture θ_u into a model's user representation, for models
    with the ``user_intent`` extension; started at zero, so the extension begins as the model without it."""
    projection = torch.nn.Linear(data.user_intent.shape[1], dim, bias=False)
    torch.nn.init.zeros_(projection.weight)
    return projection


MODELS: dict[str, type[Recommender]] = {}


def register_model(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator: make a model available by its ``name``."""
    if cls.name in MODELS and MODELS[cls.name] is not cls:
        raise ValueError(f"two models are registered as {cls.name!r}: {MODELS[cls.name]} and {cls}")
    MODELS[cls.name] = cls
    return cls


def load_models() -> dict[str, type[Recommender]]:
    """Import every module of training.models so their @register_model decorators run; return the registry."""
    import training.models as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name != "base":
            importlib.import_module(f"training.models.{module.name}")
    return MODELS
