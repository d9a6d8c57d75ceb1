"""Package a trained model's serving form as an MLflow pyfunc with an exact signature and explicit requirements, and
register it with the SHA-256 of every file it ships.

The pyfunc is logged from code (``serving/mlflow_model_code.py``) with the scorer's state as a data artefact
(``serving.scorer_files``), so nothing in the model store is a pickle; the digests recorded at registration are
checked before every load, by the service and by the promotion gate (``serving.model_integrity``).
"""

from __future__ import annotations

import tempfile
from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import ModelSignature
from mlflow.types.schema import Array, ColSpec, DataType, Schema

from graphrec.settings import REPO_ROOT
from serving.model_integrity import DIGEST_TAG, digest_tag_value, folder_digests
from serving.pyfunc_model import ITEM_ID, ITEM_PREFIX, SCORER_ARTIFACT, USER_ID, USER_PREFIX, ScorerModel
from serving.scorer_files import ScorerSpec, save_scorer

MODEL_NAME = "model"
MODEL_CODE = REPO_ROOT / "serving" / "mlflow_model_code.py"


def pip_requirements() -> list[str]:
    """What the pyfunc needs at load time, pinned to this environment."""
    return [f"{name}=={version(name)}" for name in ("mlflow", "torch", "numpy", "pandas")]


def _colspec(name: str, sample: object) -> ColSpec:
    if isinstance(sample, (list, tuple, np.ndarray)):  # id arrays are int64 (exact), other arrays float32
        integer = np.issubdtype(np.asarray(sample).dtype, np.integer)
        return ColSpec(Array(DataType.long if integer else DataType.float), name)
    if isinstance(sample, (int, np.integer)):
        return ColSpec(DataType.long, name)
    return ColSpec(DataType.float, name)


def feature_columns(frame: pd.DataFrame, key: str) -> list[str]:
    """Feature columns of an export table (everything but the entity key)."""
    return [c for c in frame.columns if c != key]


def scorer_model(
    kind: str, state: dict[str, object], user_features: pd.DataFrame, item_features: pd.DataFrame
) -> ScorerModel:
    """The pyfunc model of one exported scorer, reading the export tables' feature columns."""
    spec = ScorerSpec(
        kind=kind,
        state=state,
        user_features=tuple(feature_columns(user_features, USER_ID)),
        item_features=tuple(feature_columns(item_features, ITEM_ID)),
    )
    return ScorerModel(spec)


def signature_of(model: ScorerModel, user_features: pd.DataFrame, item_features: pd.DataFrame) -> ModelSignature:
    """Input: ids + exactly the served feature columns; output: one float logit."""
    columns = [ColSpec(DataType.long, USER_ID), ColSpec(DataType.long, ITEM_ID)]
    columns += [_colspec(USER_PREFIX + f, user_features[f].iloc[0]) for f in model.user_features]
    columns += [_colspec(ITEM_PREFIX + f, item_features[f].iloc[0]) for f in model.item_features]
    return ModelSignature(inputs=Schema(columns), outputs=Schema([ColSpec(DataType.float, "logit")]))


def log_scorer_model(model: ScorerModel, user_features: pd.DataFrame, item_features: pd.DataFrame) -> str:
    """Log the pyfunc into the active run: model code + the ``serving`` package as code, the scorer as data, the
    signature of the exported feature tables; returns the logged model's URI (``models:/<model id>``).

    No input example: MLflow 3.17 reads an example's JSON lists as float64 and refuses to narrow them to the
    signature's float32 arrays, so a stored example would fail its own serving check (graphrec.warnings)."""
    with tempfile.TemporaryDirectory(prefix="graphrec-scorer-") as scratch:
        folder = save_scorer(model.spec, Path(scratch) / SCORER_ARTIFACT)
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(MODEL_CODE),
            artifacts={SCORER_ARTIFACT: str(folder)},
            signature=signature_of(model, user_features, item_features),
            pip_requirements=pip_requirements(),
            code_paths=[str(REPO_ROOT / "serving")],
        )
    return info.model_uri


def model_digests(model_uri: str) -> dict[str, str]:
    """SHA-256 of every file of a logged model, as stored in the artefact store now."""
    with tempfile.TemporaryDirectory(prefix="graphrec-digest-") as scratch:
        return folder_digests(Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=scratch)))


def register_model_version(model_uri: str, name: str, tags: dict[str, str]) -> ModelVersion:
    """Register a logged model as a new version of ``name`` with ``tags`` and the digest manifest of its files, in
    one call, so no version ever exists without its digests."""
    return mlflow.register_model(model_uri, name, tags=tags | {DIGEST_TAG: digest_tag_value(model_digests(model_uri))})
