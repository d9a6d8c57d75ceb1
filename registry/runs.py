"""Log a training run to MLflow: config, per-epoch curves, final metrics by tercile, lineage, plots, model card and
the pyfunc of the model's serving form (with its feature tables, so registration can publish them to Feast)."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from graphrec.settings import Settings
from registry.packaging import log_scorer_model, scorer_model
from registry.plots import metrics_by_tercile_png, training_curve_png
from registry.tracking import ensure_experiment, git_commit
from serving.contract import MODEL_KIND_TAG
from training.models.base import ServingExport

MODELS_EXPERIMENT = "graphrec-models"
EXPORT_DIR = "serving_features"
SIDE_INPUTS_DIR = "side_inputs"
USER_TABLE, ITEM_TABLE = "user_features.parquet", "item_features.parquet"
PRIMARY_METRIC = "test_auc"


@dataclass(frozen=True)
class TrainedRun:
    """What a finished training produced, as the registry needs it."""

    model_name: str
    seed: int
    config: dict[str, object]
    history: list[dict[str, float]]  # per epoch: epoch, train_loss, valid_auc, valid_f1, seconds
    valid: dict[str, float]
    test: dict[str, float]
    seconds_per_epoch: float
    best_epoch: int
    dataset_name: str
    dataset_fingerprint: str
    export: ServingExport
    diagnostics: dict[str, float] = field(default_factory=dict)  # Recommender.diagnostics, keys like personal/coverage
    # per-user side inputs the model was trained on besides the graph (e.g. ``user_intent``: θ, (n_users, K)), logged
    # with the run so the version records exactly which mixture its features bake in
    side_inputs: dict[str, np.ndarray] = field(default_factory=dict)
    protocol: str = "ctr"  # the split protocol (training.data.splits): registration replays it to publish seen items
    tags: dict[str, str] = field(default_factory=dict)  # extra run tags, e.g. serving.contract.DOMAIN_TAG


def metric_key(name: str) -> str:
    """An MLflow-safe metric name ('@' is not allowed): ``recall@20/sparse`` -> ``recall_at_20/sparse``."""
    return name.replace("@", "_at_")


def lineage_fingerprint(dataset_fingerprint: str, seed: int) -> str:
    """Identity of the training data: the input files' hash and the split seed."""
    return hashlib.sha256(f"{dataset_fingerprint}:{seed}".encode()).hexdigest()[:16]


def model_card(run: TrainedRun) -> str:
    """A short markdown model card: data, protocol, metrics, intended use, known gaps."""

    def row(metric: str) -> str:
        cells = [run.test.get(metric + suffix, float("nan")) for suffix in ("", "/sparse", "/medium", "/active")]
        return f"| {metric} | " + " | ".join(f"{v:.4f}" for v in cells) + " |"

    diagnostics = [f"- diagnostic `{key}`: {value:.4f}" for key, value in run.diagnostics.items()]
    diagnostics += [""] if diagnostics else []
    return "\n".join(
        [
            f"# Model card: {run.model_name}",
            "",
            f"- **Data**: `{run.dataset_name}` (fingerprint `{run.dataset_fingerprint}`), split seed {run.seed}.",
            "- **Protocol**: CTR split 6:2:2 over labelled rows; selection (early stopping) on validation AUC only;"
            " the test split is evaluated once. Top-K: Recall/NDCG@20 over all items not in the user's training set.",
            f"- **Training**: best epoch {run.best_epoch}, {run.seconds_per_epoch:.2f} s/epoch.",
            "",
            "| test metric | overall | sparse | medium | active |",
            "|---|---|---|---|---|",
            row("auc"),
            row("f1"),
            row("recall@20"),
            row("ndcg@20"),
            "",
            *diagnostics,
            "- **Intended use**: re-ranking candidates for users of the same catalogue, many of them low-activity.",
            "- **Serving**: a pyfunc scoring from the version's own Feast feature views (ids + features only).",
            "- **Known gaps**: features are a snapshot of the training graph; users and items unseen at training get"
            " the service's explicit fallback, not a model score.",
        ]
    )


def side_input_digest(values: np.ndarray) -> str:
    """SHA-256 of a side input's float32 bytes: equal digests, the same values."""
    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float32).tobytes()).hexdigest()


def log_training_run(settings: Settings, run: TrainedRun) -> str:
    """Log ``run`` as an MLflow run in the models experiment; returns the run id."""
    experiment_id = ensure_experiment(settings, MODELS_EXPERIMENT)
    export = run.export
    model = scorer_model(export.scorer_kind, export.scorer_state, export.user_features, export.item_features)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{run.model_name}-seed{run.seed}") as active:
        mlflow.log_params(
            {"model": run.model_name, "seed": run.seed, "protocol": run.protocol}
            | {f"config.{k}": v for k, v in run.config.items()}
        )
        for record in run.history:
            step = int(record["epoch"])
            mlflow.log_metrics({k: float(v) for k, v in record.items() if k != "epoch"}, step=step)
        mlflow.log_metrics({f"valid_{metric_key(k)}": v for k, v in run.valid.items()})
        mlflow.log_metrics({f"test_{metric_key(k)}": v for k, v in run.test.items()})
        mlflow.log_metrics({"seconds_per_epoch": run.seconds_per_epoch, "best_epoch": run.best_epoch})
        mlflow.log_metrics({f"diag_{metric_key(k)}": v for k, v in run.diagnostics.items()})
        mlflow.set_tags(
            {
                MODEL_KIND_TAG: run.model_name,
                "graphrec.dataset": run.dataset_name,
                "graphrec.dataset_fingerprint": lineage_fingerprint(run.dataset_fingerprint, run.seed),
                "graphrec.input_files_fingerprint": run.dataset_fingerprint,
                "graphrec.scorer": export.scorer_kind,
                "graphrec.user_features": ",".join(model.user_features),
                "graphrec.item_features": ",".join(model.item_features),
                "git_commit": git_commit(),
            }
            | {f"graphrec.side_input.{name}.sha256": side_input_digest(v) for name, v in run.side_inputs.items()}
            | run.tags
        )
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            for name, values in run.side_inputs.items():
                frame = pd.DataFrame({"user_id": np.arange(len(values)), name: list(values.astype(np.float32))})
                frame.to_parquet(folder / f"{name}.parquet")
                mlflow.log_artifact(str(folder / f"{name}.parquet"), SIDE_INPUTS_DIR)
            mlflow.log_artifact(str(training_curve_png(run.model_name, run.history, run.best_epoch, folder)), "plots")
            mlflow.log_artifact(str(metrics_by_tercile_png(run.model_name, run.test, folder)), "plots")
            (folder / "model_card.md").write_text(model_card(run))
            mlflow.log_artifact(str(folder / "model_card.md"))
            export.user_features.to_parquet(folder / USER_TABLE)
            export.item_features.to_parquet(folder / ITEM_TABLE)
            mlflow.log_artifact(str(folder / USER_TABLE), EXPORT_DIR)
            mlflow.log_artifact(str(folder / ITEM_TABLE), EXPORT_DIR)
        log_scorer_model(model, export.user_features, export.item_features)
        return active.info.run_id
