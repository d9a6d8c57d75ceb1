"""Train one model, evaluate it (validation for selection, test once), and log it to MLflow; optionally register."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from mlflow.entities.model_registry import ModelVersion

from graphrec.settings import Settings
from registry.runs import TrainedRun, log_training_run
from training.data.load import load_dataset
from training.data.splits import Protocol
from training.evaluation.harness import evaluate_split
from training.models.base import ModelConfig
from training.trainer import EpochRecord, fit, prepare_data


@dataclass(frozen=True)
class TrainOutcome:
    """What ``graphrec train`` did: the run it logged and, with --register, the version it created."""

    run: TrainedRun
    run_id: str
    version: ModelVersion | None


def resume_path(settings: Settings, model_name: str, protocol: Protocol, seed: int) -> Path:
    """Where ``graphrec train --resume`` keeps an unfinished fit of this model, split and seed (one per triple: the
    state names its config and dataset, and a different one is refused rather than overwritten)."""
    return settings.work_dir / "train-state" / f"{model_name}.{protocol}.seed{seed}.pt"


def train_and_log(
    settings: Settings,
    model_name: str,
    config: ModelConfig | None = None,
    seed: int | None = None,
    register_version: bool = False,
    topk_users: int | None = 300,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    protocol: Protocol = "ctr",
    workers: int = 1,
    resume: bool = False,
) -> TrainOutcome:
    """Fit ``model_name`` on the configured dataset's ``protocol`` split, log everything to MLflow, and register it
    when asked. With ``workers`` > 1 the fit is data-parallel on Ray Train (:mod:`training.distributed`, the Ray of
    the settings); ``on_epoch`` then sees rank 0's epoch records once the run has finished. With ``resume`` the fit
    keeps its state at :func:`resume_path` and continues from it when a state is there (``training.resume``)."""
    seed = settings.seed if seed is None else seed
    dataset = load_dataset(settings)
    data = prepare_data(dataset, seed, protocol)
    if workers > 1:
        from featurestore.ray_runtime import ray_target
        from training.distributed import fit_distributed

        storage = settings.work_dir / "ray-train"
        result = fit_distributed(model_name, data, config, seed, workers, ray_target(settings), storage=storage)
        for record in result.history if on_epoch is not None else []:
            on_epoch(record)
    else:
        state = resume_path(settings, model_name, protocol, seed) if resume else None
        result = fit(model_name, data, config, seed, on_epoch, resume_path=state)
    valid = evaluate_split(result.model, data, data.split.valid, topk_users, seed)
    test = evaluate_split(result.model, data, data.split.test, topk_users, seed)  # the one touch of the test split
    run = TrainedRun(
        model_name=model_name,
        seed=seed,
        config=result.config.model_dump(),
        history=[asdict(record) for record in result.history],
        valid=valid,
        test=test,
        seconds_per_epoch=result.seconds_per_epoch,
        best_epoch=result.best_epoch,
        dataset_name=dataset.name,
        dataset_fingerprint=dataset.fingerprint,
        export=result.model.export_serving(),
        diagnostics=result.diagnostics,
        side_inputs={"user_intent": data.user_intent} if getattr(result.config, "user_intent", False) else {},
        protocol=protocol,
    )
    run_id = log_training_run(settings, run)
    version = None
    if register_version:
        from registry.versions import register

        version = register(settings, run_id, settings.registered_model_name)
    return TrainOutcome(run, run_id, version)
