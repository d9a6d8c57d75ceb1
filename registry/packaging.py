"""Package a trained model's serving form as an MLflow pyfunc with an exact signature and explicit requirements."""

from __future__ import annotations

from importlib.metadata import version

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import Array, ColSpec, DataType, Schema

from graphrec.settings import REPO_ROOT
from serving.pyfunc_model import ITEM_ID, ITEM_PREFIX, USER_ID, USER_PREFIX, ScorerModel

MODEL_NAME = "model"


def pip_requirements() -> list[str]:
    """What the pyfunc needs at load time, pinned to this environment (MLflow's inference found only cloudpickle)."""
    return [f"{name}=={version(name)}" for name in ("mlflow", "torch", "numpy", "pandas", "cloudpickle")]


def _colspec(name: str, sample: object) -> ColSpec:
    if isinstance(sample, (list, tuple, np.ndarray)):
        return ColSpec(Array(DataType.float), name)
    if isinstance(sample, (int, np.integer)):
        return ColSpec(DataType.long, name)
    return ColSpec(DataType.float, name)


def feature_columns(frame: pd.DataFrame, key: str) -> list[str]:
    """Feature columns of an export table (everything but the entity key)."""
    return [c for c in frame.columns if c != key]


def scorer_model(
    kind: str, state: dict[str, object], user_features: pd.DataFrame, item_features: pd.DataFrame
) -> ScorerModel:
    """The pyfunc wrapper of one exported model."""
    return ScorerModel(kind, state, feature_columns(user_features, USER_ID), feature_columns(item_features, ITEM_ID))


def signature_of(model: ScorerModel, user_features: pd.DataFrame, item_features: pd.DataFrame) -> ModelSignature:
    """Input: ids + exactly the served feature columns; output: one float logit."""
    columns = [ColSpec(DataType.long, USER_ID), ColSpec(DataType.long, ITEM_ID)]
    columns += [_colspec(USER_PREFIX + f, user_features[f].iloc[0]) for f in model.user_features]
    columns += [_colspec(ITEM_PREFIX + f, item_features[f].iloc[0]) for f in model.item_features]
    return ModelSignature(inputs=Schema(columns), outputs=Schema([ColSpec(DataType.float, "logit")]))


def log_scorer_model(model: ScorerModel, user_features: pd.DataFrame, item_features: pd.DataFrame) -> str:
    """Log the pyfunc into the active run with the signature of the exported feature tables, shipping the ``serving``
    package with it; returns the logged model's URI (``models:/<model id>``).

    No input example: MLflow 3.17 reads an example's JSON lists as float64 and refuses to narrow them to the
    signature's float32 arrays, so a stored example would fail its own serving check (graphrec.warnings)."""
    import mlflow

    info = mlflow.pyfunc.log_model(
        name=MODEL_NAME,
        python_model=model,
        signature=signature_of(model, user_features, item_features),
        pip_requirements=pip_requirements(),
        code_paths=[str(REPO_ROOT / "serving")],
    )
    return info.model_uri
