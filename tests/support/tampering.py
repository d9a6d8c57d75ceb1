"""Tampering with a registered model the way an attacker with write access to the artefact store would, and a pickle
payload that shows whether planted code ran."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from mlflow import MlflowClient

from serving.model_integrity import SCORER_FOLDER
from serving.scorer_files import ARRAYS_FILE

TAMPERINGS = ("pickle", "weights", "code")


class FileWritingPayload:
    """Pickles to a call of ``open(marker, "w")``: unpickling it creates ``marker``, which is how a test sees that
    planted code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def version_folder(name: str, version: str) -> Path:
    """The version's model folder in the local artefact store (what an attacker with write access edits)."""
    uri = MlflowClient().get_model_version_download_uri(name, version)
    return Path(uri.removeprefix("file://"))


def plant(folder: Path, how: str, marker: Path) -> str:
    """Tamper with a model folder the way ``how`` says; returns the file name the refusal must name."""
    if how == "pickle":
        (folder / "python_model.pkl").write_bytes(pickle.dumps(FileWritingPayload(marker)))
        return "python_model.pkl was added"
    if how == "weights":
        arrays = folder / SCORER_FOLDER / ARRAYS_FILE
        np.savez(arrays, allow_pickle=False, **{"state.planted": np.ones(3, np.float32)})
        return f"{SCORER_FOLDER.as_posix()}/{ARRAYS_FILE} changed"
    code = folder / "mlflow_model_code.py"
    code.write_text(f"open({str(marker)!r}, 'w')\n" + code.read_text())
    return "mlflow_model_code.py changed"
