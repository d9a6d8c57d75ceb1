"""The MLflow pyfunc every graphrec model is logged as: a registered scorer applied to served feature columns.

Input: a DataFrame with ``user_id``, ``item_id`` and one column per feature of the model's feature service, named
``user_<feature>`` / ``item_<feature>`` (array features as arrays of float32, id arrays of int64). Output: one logit
per row.
Depends only on numpy, pandas, torch and ``serving.scoring`` — never on ``training`` or DGL — so a model loads in
the serving process and in any bare environment with the logged pip requirements.

Nothing is pickled: the model is logged *from code* (``serving/mlflow_model_code.py`` builds an empty
:class:`ScorerModel`) and its state is the ``scorer`` artefact (``serving.scorer_files``: JSON + npz), read in
:meth:`ScorerModel.load_context`. graphrec itself never goes through ``mlflow.pyfunc.load_model``: it verifies the
artefacts' SHA-256 and reads the scorer folder directly (``serving.model_integrity``).
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

from serving.scorer_files import ScorerSpec, load_scorer
from serving.scoring import CandidateScorer, Scorer, build_scorer, prepare_candidates

USER_ID, ITEM_ID = "user_id", "item_id"
USER_PREFIX, ITEM_PREFIX = "user_", "item_"
SCORER_ARTIFACT = "scorer"  # the pyfunc artefact holding scorer.json + scorer.npz


def column_values(values: object) -> np.ndarray:
    """A feature column as a numpy array: scalars as (B,), equal-length arrays stacked to (B, n), integer arrays (ids)
    as int64, exact, other arrays as float32."""
    array = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values, dtype=object)
    if len(array) and isinstance(array[0], (list, tuple, np.ndarray)):
        stacked = np.stack([np.asarray(v) for v in array])
        return stacked.astype(np.int64 if np.issubdtype(stacked.dtype, np.integer) else np.float32)
    return np.asarray(array)


class ScorerModel(mlflow.pyfunc.PythonModel):
    """A scorer's spec (kind, state, the feature columns it reads from each side) and the scorer built from it.

    Built empty by the logged model code and filled by :meth:`load_context`, or directly from a spec or a folder."""

    def __init__(self, spec: ScorerSpec | None = None):
        self._spec = spec
        self._scorer: Scorer | None = None

    @classmethod
    def from_folder(cls, folder: Path) -> ScorerModel:
        """The model whose scorer is saved in ``folder`` (``serving.scorer_files``), scorer built."""
        model = cls(load_scorer(folder))
        model.scorer()
        return model

    @property
    def spec(self) -> ScorerSpec:
        """The scorer's spec; an empty model (before ``load_context``) has none."""
        if self._spec is None:
            raise RuntimeError("this ScorerModel holds no scorer yet: MLflow fills it in load_context")
        return self._spec

    @property
    def user_features(self) -> list[str]:
        """Feature columns read from the user side."""
        return list(self.spec.user_features)

    @property
    def item_features(self) -> list[str]:
        """Feature columns read from the item side."""
        return list(self.spec.item_features)

    @property
    def input_columns(self) -> list[str]:
        """Every column ``predict`` reads, in signature order."""
        return (
            [USER_ID, ITEM_ID]
            + [USER_PREFIX + f for f in self.user_features]
            + [ITEM_PREFIX + f for f in self.item_features]
        )

    def scorer(self) -> Scorer:
        """The scorer, built once from the spec."""
        if self._scorer is None:
            self._scorer = build_scorer(self.spec.kind, self.spec.state)
        return self._scorer

    def load_context(self, context: object) -> None:
        """Read the ``scorer`` artefact and build the scorer when MLflow loads the model."""
        self._spec = load_scorer(Path(context.artifacts[SCORER_ARTIFACT]))  # type: ignore[attr-defined]
        self._scorer = None
        self.scorer()

    def score_arrays(self, user_rows: dict[str, np.ndarray], item_rows: dict[str, np.ndarray]) -> np.ndarray:
        """The hot path for serving: logits from per-side feature arrays (no pandas)."""
        return np.asarray(self.scorer().score(user_rows, item_rows), dtype=np.float32)

    def candidates(self, item_columns: dict[str, np.ndarray]) -> CandidateScorer:
        """The serving hot path's form: one user against items of a cached table (``item_columns``, one row per item),
        with the scorer's item-only work done here, once."""
        return prepare_candidates(self.scorer(), item_columns)

    def predict(self, context: object, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        """Logits for each row of ``model_input`` (see the module docstring for its columns)."""
        missing = [c for c in self.input_columns if c not in model_input.columns]
        if missing:
            raise ValueError(f"model input lacks columns: {', '.join(missing)}")
        user_rows = {f: column_values(model_input[USER_PREFIX + f]) for f in self.user_features}
        item_rows = {f: column_values(model_input[ITEM_PREFIX + f]) for f in self.item_features}
        return self.score_arrays(user_rows, item_rows)
