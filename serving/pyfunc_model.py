"""The MLflow pyfunc every graphrec model is logged as: a registered scorer applied to served feature columns.

Input: a DataFrame with ``user_id``, ``item_id`` and one column per feature of the model's feature service, named
``user_<feature>`` / ``item_<feature>`` (array features as lists/arrays of float32). Output: one logit per row.
Depends only on numpy, pandas, torch and ``serving.scoring`` — never on ``training`` or DGL — so a model loads in
the serving process and in any bare environment with the logged pip requirements.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd

from serving.scoring import Scorer, build_scorer

USER_ID, ITEM_ID = "user_id", "item_id"
USER_PREFIX, ITEM_PREFIX = "user_", "item_"


def column_values(values: object) -> np.ndarray:
    """A feature column as a numpy array: scalars as (B,), equal-length arrays stacked to (B, n)."""
    array = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values, dtype=object)
    if len(array) and isinstance(array[0], (list, tuple, np.ndarray)):
        return np.stack([np.asarray(v, dtype=np.float32) for v in array])
    return np.asarray(array)


class ScorerModel(mlflow.pyfunc.PythonModel):
    """Holds a scorer's kind and state and the feature columns it reads from each side."""

    def __init__(self, kind: str, state: dict[str, object], user_features: list[str], item_features: list[str]):
        self.kind = kind
        self.state = state
        self.user_features = list(user_features)
        self.item_features = list(item_features)
        self._scorer: Scorer | None = None

    @property
    def input_columns(self) -> list[str]:
        """Every column ``predict`` reads, in signature order."""
        return (
            [USER_ID, ITEM_ID]
            + [USER_PREFIX + f for f in self.user_features]
            + [ITEM_PREFIX + f for f in self.item_features]
        )

    def scorer(self) -> Scorer:
        """The scorer, built once from the exported state."""
        if self._scorer is None:
            self._scorer = build_scorer(self.kind, self.state)
        return self._scorer

    def load_context(self, context: object) -> None:
        """Build the scorer when MLflow loads the model."""
        self.scorer()

    def score_arrays(self, user_rows: dict[str, np.ndarray], item_rows: dict[str, np.ndarray]) -> np.ndarray:
        """The hot path for serving: logits from per-side feature arrays (no pandas)."""
        return np.asarray(self.scorer().score(user_rows, item_rows), dtype=np.float32)

    def predict(self, context: object, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        """Logits for each row of ``model_input`` (see the module docstring for its columns)."""
        missing = [c for c in self.input_columns if c not in model_input.columns]
        if missing:
            raise ValueError(f"model input lacks columns: {', '.join(missing)}")
        user_rows = {f: column_values(model_input[USER_PREFIX + f]) for f in self.user_features}
        item_rows = {f: column_values(model_input[ITEM_PREFIX + f]) for f in self.item_features}
        return self.score_arrays(user_rows, item_rows)
