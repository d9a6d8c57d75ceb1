"""Scorers: compute a model's logits from its served feature rows alone (numpy/torch; no graph, no DGL).

Each scorer module registers a class under a kind name; a model's serving export names the kind and carries the
state (weights, hyper-parameters) to rebuild it. Serving and the MLflow pyfunc load scorers through
:func:`build_scorer`, so adding a model's scorer never edits a switch.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Protocol

import numpy as np


class Scorer(Protocol):
    """Scores aligned user/item feature rows: ``user_rows[f]`` and ``item_rows[f]`` are arrays with one row per pair."""

    def score(self, user_rows: dict[str, np.ndarray], item_rows: dict[str, np.ndarray]) -> np.ndarray:
        """Logits, shape (B,)."""
        ...


class CandidateScorer(Protocol):
    """Scores one user against the items at given positions of the item table it was prepared with."""

    def score(self, user_rows: dict[str, np.ndarray], index: np.ndarray) -> np.ndarray:
        """Logits of the user (rows of one entity: (1, ...) arrays) against the items at ``index``, shape (B,)."""
        ...


class RepeatedUser:
    """The generic candidate form: the user's row repeated per candidate, the items' rows gathered, ``score``."""

    def __init__(self, scorer: Scorer, item_columns: dict[str, np.ndarray]):
        self.scorer, self.item_columns = scorer, item_columns

    def score(self, user_rows: dict[str, np.ndarray], index: np.ndarray) -> np.ndarray:
        """Logits, shape (B,)."""
        users = {f: np.repeat(v, len(index), axis=0) for f, v in user_rows.items()}
        items = {f: column[index] for f, column in self.item_columns.items()}
        return self.scorer.score(users, items)


def prepare_candidates(scorer: Scorer, item_columns: dict[str, np.ndarray]) -> CandidateScorer:
    """The scorer's own candidate form over ``item_columns`` (one row per item) when it has one, else
    :class:`RepeatedUser`."""
    prepare = getattr(scorer, "prepare", None)
    return prepare(item_columns) if prepare is not None else RepeatedUser(scorer, item_columns)


SCORERS: dict[str, type] = {}


def register_scorer(kind: str):
    """Class decorator: make a scorer class buildable by kind; the class takes ``**state`` in its constructor."""

    def decorate(cls: type) -> type:
        if kind in SCORERS and SCORERS[kind] is not cls:
            raise ValueError(f"two scorers are registered as {kind!r}")
        SCORERS[kind] = cls
        return cls

    return decorate


def build_scorer(kind: str, state: dict[str, object]) -> Scorer:
    """Rebuild a registered scorer from its exported state."""
    import serving.scoring as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"serving.scoring.{module.name}")
    if kind not in SCORERS:
        raise KeyError(f"no scorer registered as {kind!r}; known: {', '.join(sorted(SCORERS))}")
    return SCORERS[kind](**state)
