"""A scorer stored as data, never as code: ``scorer.json`` (format, kind, feature columns, the state's layout) and
``scorer.npz`` (the state's arrays, read with ``allow_pickle=False``).

Loading these two files runs no code from them: JSON is parsed, arrays are read as plain numeric buffers, and the
scorer class is picked by its registered kind name from ``serving.scoring`` (docs/SECURITY.md). A state is a tree of
dicts, lists/tuples, numpy arrays and JSON scalars; each array is stored in the npz under the dotted path of its place
in the tree, and the JSON keeps the tree with ``{"array": <path>}`` where an array was.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = "graphrec.scorer/1"
SPEC_FILE = "scorer.json"
ARRAYS_FILE = "scorer.npz"


class ScorerFileError(ValueError):
    """A scorer folder that is missing, malformed, or holds something other than plain data."""


@dataclass(frozen=True)
class ScorerSpec:
    """Everything that rebuilds a scorer: its registered kind, its state, and the feature columns it reads per side."""

    kind: str
    state: dict[str, object]
    user_features: tuple[str, ...]
    item_features: tuple[str, ...]


def _encode(value: object, path: str, arrays: dict[str, np.ndarray]) -> object:
    """The JSON form of one state node; arrays are moved into ``arrays`` under ``path``."""
    if isinstance(value, dict):
        return {"dict": {str(k): _encode(v, f"{path}.{k}", arrays) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"list": [_encode(v, f"{path}.{i}", arrays) for i, v in enumerate(value)]}
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise ScorerFileError(f"state entry {path!r} is an object array; only numeric arrays are stored")
        arrays[path] = value
        return {"array": path}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ScorerFileError(f"state entry {path!r} is {value}; JSON holds finite numbers only")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ScorerFileError(f"state entry {path!r} is a {type(value).__name__}; store arrays, lists, dicts or scalars")


def _decode(node: object, arrays: np.lib.npyio.NpzFile, where: Path) -> object:
    """The state node of one JSON node (inverse of :func:`_encode`)."""
    if isinstance(node, dict):
        if set(node) == {"dict"} and isinstance(node["dict"], dict):
            return {k: _decode(v, arrays, where) for k, v in node["dict"].items()}
        if set(node) == {"list"} and isinstance(node["list"], list):
            return [_decode(v, arrays, where) for v in node["list"]]
        if set(node) == {"array"} and isinstance(node["array"], str):
            if node["array"] not in arrays.files:
                raise ScorerFileError(f"{where / ARRAYS_FILE} lacks the array {node['array']!r} that {SPEC_FILE} names")
            return arrays[node["array"]]
        raise ScorerFileError(f"{where / SPEC_FILE}: unknown state node with keys {sorted(node)}")
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    raise ScorerFileError(f"{where / SPEC_FILE}: unexpected state value of type {type(node).__name__}")


def save_scorer(spec: ScorerSpec, folder: Path) -> Path:
    """Write ``spec`` as ``scorer.json`` + ``scorer.npz`` into ``folder`` (created); returns the folder."""
    arrays: dict[str, np.ndarray] = {}
    document = {
        "format": FORMAT,
        "kind": spec.kind,
        "user_features": list(spec.user_features),
        "item_features": list(spec.item_features),
        "state": _encode(dict(spec.state), "state", arrays)["dict"],
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SPEC_FILE).write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")
    np.savez(folder / ARRAYS_FILE, allow_pickle=False, **arrays)
    return folder


def _names(document: dict, key: str, where: Path) -> tuple[str, ...]:
    values = document.get(key)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ScorerFileError(f"{where / SPEC_FILE}: {key!r} must be a list of feature names")
    return tuple(values)


def load_scorer(folder: Path) -> ScorerSpec:
    """The :class:`ScorerSpec` saved in ``folder``; refuses anything but the documented plain-data format."""
    try:
        document = json.loads((folder / SPEC_FILE).read_text())
    except FileNotFoundError as error:
        raise ScorerFileError(f"{folder} holds no {SPEC_FILE}: not a graphrec scorer (pickles are refused)") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ScorerFileError(f"{folder / SPEC_FILE} is not valid JSON: {error}") from error
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ScorerFileError(f"{folder / SPEC_FILE}: format is not {FORMAT!r}")
    if not isinstance(document.get("kind"), str) or not isinstance(document.get("state"), dict):
        raise ScorerFileError(f"{folder / SPEC_FILE}: 'kind' (a name) and 'state' (an object) are required")
    try:
        with np.load(folder / ARRAYS_FILE, allow_pickle=False) as arrays:
            state = _decode({"dict": document["state"]}, arrays, folder)
    except (OSError, ValueError) as error:
        if isinstance(error, ScorerFileError):
            raise
        raise ScorerFileError(f"{folder / ARRAYS_FILE} is not a plain-data npz: {error}") from error
    return ScorerSpec(
        kind=document["kind"],
        state=state,
        user_features=_names(document, "user_features", folder),
        item_features=_names(document, "item_features", folder),
    )
