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
