"""``graphrec tune`` with MLflow tracking: a parent run per study, one nested run per trial, the best config written.

The search itself is :func:`training.tuning.tune` (validation AUC only); this module only adds the tracking, which the
training layer may not import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow

from graphrec.settings import Settings
from registry.tracking import ensure_experiment, git_commit
from training.data.load import load_dataset
from training.data.splits import Protocol
from training.models.base import ModelConfig
from training.trainer import prepare_data
from training.tuning import TUNED_DIR, StudyRecord, TrialOutcome, default_regime, tune, write_tuned

TUNING_EXPERIMENT = "graphrec-tuning"


@dataclass(frozen=True)
class TuneOutcome:
    """What a study did: its record (budget, best trial), where the best config went, the parent MLflow run."""

    record: StudyRecord
    best_params: dict[str, object]
    path: Path
    run_id: str


def _log_trial(outcome: TrialOutcome) -> None:
    """One nested MLflow run under the active study run (in its experiment): the sampled parameters, the validation
    curve and the objective."""
    parent = mlflow.active_run()
    experiment_id = None if parent is None else parent.info.experiment_id
    with mlflow.start_run(run_name=f"trial-{outcome.number}", nested=True, experiment_id=experiment_id):
        mlflow.log_params(outcome.params)
        for record in outcome.history:
            mlflow.log_metrics({"valid_auc": record.valid_auc, "valid_f1": record.valid_f1}, step=record.epoch)
        mlflow.log_metrics(
            {"best_valid_auc": outcome.valid_auc, "best_epoch": outcome.best_epoch, "seconds": outcome.seconds}
        )


def tune_and_log(
    settings: Settings,
    model_name: str,
    n_trials: int,
    seed: int | None = None,
    timeout: float | None = None,
    epochs: int = 30,
    patience: int = 5,
    regime: str | None = None,
    protocol: Protocol = "ctr",
    out_dir: Path = TUNED_DIR,
    on_trial: Callable[[TrialOutcome], None] | None = None,
    base: ModelConfig | None = None,
    base_path: Path | None = None,
) -> TuneOutcome:
    """Run the study on the configured dataset (split seeded by ``seed``), track it in MLflow, write the best
    config to ``out_dir``. ``base`` (read from ``base_path``, recorded with the study) gives the fields outside the
    search space."""
    seed = settings.seed if seed is None else seed
    regime = regime or default_regime(model_name)
    dataset = load_dataset(settings)
    data = prepare_data(dataset, seed, protocol)
    experiment_id = ensure_experiment(settings, TUNING_EXPERIMENT)
    conditions = {"model": model_name, "regime": regime, "protocol": protocol, "seed": seed, "epochs": epochs}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{model_name}-{regime}-study") as parent:
        mlflow.log_params(
            conditions | {"patience": patience, "n_trials": n_trials, "timeout": timeout, "base_config": base_path}
        )
        mlflow.set_tags({"graphrec.kind": "tuning-study", "git_commit": git_commit(), "dataset": dataset.name})

        def each_trial(outcome: TrialOutcome) -> None:
            _log_trial(outcome)
            if on_trial is not None:
                on_trial(outcome)

        study = tune(model_name, data, n_trials, seed, timeout, epochs, patience, regime, each_trial, base=base)
        best = study.best_trial
        record = StudyRecord(
            **conditions,
            dataset=dataset.name,
            n_trials=len(study.trials),
            patience=patience,
            best_trial=best.number,
            best_valid_auc=float(best.value),
            base_config=None if base_path is None else str(base_path),
            first_trial_is_start=True,
        )
        mlflow.log_params({f"best.{k}": v for k, v in best.params.items()})
        mlflow.log_metrics({"best_valid_auc": record.best_valid_auc, "best_trial": best.number})
        path = write_tuned(study, record, out_dir)
        mlflow.log_artifact(str(path))
        return TuneOutcome(record, dict(best.params), path, parent.info.run_id)
