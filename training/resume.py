"""Resumable training: the whole state of an unfinished fit in one file, so a fit that dies (a killed process, a
preempted machine, a session that ends) continues where it stopped instead of starting over. At 10⁶ users one KCAN
epoch takes hours on a small machine (BENCHMARKS.md), so losing a process must not lose the epoch.

The state holds what the next step depends on: the weights and the optimiser's moments, the epoch's shuffled row
order and the position in it, the loss and seconds of the epoch so far, the random generators (the shuffle's, torch's
and numpy's global ones, which models draw negatives from and KCAN reseeds DGL's sampler from every step, and the
model's own: ``Recommender.generator_states``, e.g. a knowledge-graph negative sampler's) and the early-stopping
bookkeeping (best validation AUC, its weights, the patience count, the epoch history). A fit resumed from it takes
the same steps an uninterrupted fit would have taken from that point (tests/test_resume.py).

It is written atomically (a temporary file beside it, then ``os.replace``), so a process killed while saving leaves
the previous state whole. It is loaded with ``weights_only=True`` (tensors and plain containers only: no pickled code
runs), and it carries the identity of the fit that wrote it (model, config, dataset fingerprint, training rows, seed):
a state written by another fit is refused with the fields that differ, never silently mixed into this one.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch


class ResumeError(ValueError):
    """A state file that cannot be used to resume this fit: unreadable, or written by a different fit."""


@dataclass
class TrainingState:
    """Everything an unfinished fit needs to continue (see the module docstring). ``order`` is None at an epoch
    boundary: the next epoch draws its order from the restored shuffle generator."""

    identity: dict[str, object]
    epoch: int
    next_row: int
    order: torch.Tensor | None
    epoch_loss: float
    epoch_batches: int
    epoch_seconds: float
    model: dict[str, torch.Tensor]
    optimizer: dict[str, object]
    shuffle_rng: torch.Tensor
    torch_rng: torch.Tensor
    numpy_rng: dict[str, object]
    model_rngs: dict[str, torch.Tensor]
    best_auc: float
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    stale: int
    history: list[dict[str, float]] = field(default_factory=list)


def numpy_rng_state() -> dict[str, object]:
    """numpy's global generator state as tensors and numbers (loadable with ``weights_only=True``)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
            "has_gauss": int(has_gauss), "cached": float(cached)}  # fmt: skip


def restore_numpy_rng(state: dict[str, object]) -> None:
    """Set numpy's global generator to a state from :func:`numpy_rng_state`."""
    keys = state["keys"].numpy().astype(np.uint32)  # type: ignore[union-attr]
    np.random.set_state((state["kind"], keys, state["position"], state["has_gauss"], state["cached"]))


def save_state(path: Path, state: TrainingState) -> None:
    """Write ``state`` to ``path`` atomically: a killed process leaves either the previous state or this one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    torch.save(asdict(state), partial)
    os.replace(partial, path)


def load_state(path: Path, identity: dict[str, object]) -> TrainingState:
    """The state in ``path``, checked to have been written by the fit ``identity`` describes.

    Raises :class:`ResumeError` naming the file when it cannot be read or when it belongs to another fit (the fields
    that differ, with both values)."""
    try:
        raw = torch.load(path, weights_only=True)
        state = TrainingState(**raw)
    except Exception as exc:  # torch raises several kinds for a truncated or foreign file
        raise ResumeError(f"{path}: not a readable training state ({type(exc).__name__}: {exc})") from exc
    if differences := identity_differences(state.identity, identity):
        raise ResumeError(
            f"{path}: written by a different fit ({'; '.join(differences)}); delete it to start over, or resume "
            "with the settings that wrote it"
        )
    return state


def identity_differences(saved: dict[str, object], current: dict[str, object]) -> list[str]:
    """``key: saved there, current here`` for every field (config fields as ``config.name``) that differs."""

    def flat(identity: dict[str, object]) -> dict[str, object]:
        config = identity.get("config", {})
        rest = {key: value for key, value in identity.items() if key != "config"}
        return rest | {f"config.{key}": value for key, value in config.items()}  # type: ignore[union-attr]

    there, here = flat(saved), flat(current)
    return [
        f"{key}: {there.get(key, '(absent)')!r} there, {here.get(key, '(absent)')!r} here"
        for key in sorted(there.keys() | here.keys())
        if there.get(key) != here.get(key)
    ]
