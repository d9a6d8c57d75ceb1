"""MLflow tracking: one place that points MLflow at the settings' store and logs graphrec's runs."""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
from dataclasses import asdict
from typing import TYPE_CHECKING

from filelock import FileLock

from graphrec.settings import REPO_ROOT, Settings

if TYPE_CHECKING:
    from training.features.jobs import BuildReport, FeatureJobConfig

FEATURES_EXPERIMENT = "graphrec-features"


def configure_mlflow(settings: Settings) -> None:
    """Point MLflow at the settings' tracking/registry URI; the default SQLite store keeps artefacts in work_dir."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_uri)
    mlflow.set_registry_uri(settings.mlflow_uri)
    if _is_sqlite(settings.mlflow_uri):
        _create_sqlite_schema(settings.mlflow_uri)


@functools.cache
def _create_sqlite_schema(uri: str) -> None:
    """Create MLflow's tables in a SQLite store once per process, under an exclusive lock beside the database: two
    processes opening a fresh store at once (two `graphrec tune` started together) otherwise both run MLflow's schema
    migrations and one fails with "duplicate column name". A server-backed store migrates once, in the server."""
    from mlflow import MlflowClient

    with _store_lock(uri):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)  # opening the tracking store creates or migrates every table
        client.search_registered_models(max_results=1)


def _is_sqlite(uri: str) -> bool:
    return uri.startswith("sqlite:///")


def _store_lock(uri: str) -> contextlib.AbstractContextManager:
    """The exclusive lock of a SQLite store, ``<database>.lock`` beside it (other processes taking it wait); no lock
    for a server-backed store, whose server serialises its own writes."""
    return FileLock(uri.removeprefix("sqlite:///") + ".lock") if _is_sqlite(uri) else contextlib.nullcontext()


def ensure_experiment(settings: Settings, name: str) -> str:
    """The id of experiment ``name``, created with its artefacts under the work dir when it does not exist (under the
    store's lock for a SQLite store, so processes starting together create it once)."""
    import mlflow

    configure_mlflow(settings)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if settings.mlflow_tracking_uri is None:
        location = (settings.mlflow_artifacts_dir / name).resolve().as_uri()
    with _store_lock(settings.mlflow_uri):
        experiment = mlflow.get_experiment_by_name(name)  # made by another process while this one waited
        if experiment is not None:
            return experiment.experiment_id
        return mlflow.create_experiment(name, artifact_location=location)


def git_commit() -> str:
    """The checkout's commit (with ``-dirty`` when the tree has changes), or 'unknown' outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty.strip() else "")


def log_feature_build(settings: Settings, report: BuildReport, config: FeatureJobConfig) -> str:
    """Log a feature build (TransH config, per-epoch loss, held-out link prediction, snapshots) as an MLflow run."""
    import mlflow

    experiment_id = ensure_experiment(settings, FEATURES_EXPERIMENT)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"features-{report.created:%Y%m%dT%H%M%S}") as run:
        mlflow.log_params({f"transh.{k}": v for k, v in asdict(config.transh).items()})
        mlflow.log_params({"active_window_days": config.active_window_days, "as_of": report.as_of.isoformat()})
        if report.two_hop_method is not None:
            mlflow.log_param("two_hop_reach", report.two_hop_method)
        mlflow.set_tags(
            {
                "graphrec.kind": "feature-build",
                "git_commit": git_commit(),
                "dataset": settings.dataset,
                "dataset_fingerprint": report.dataset_fingerprint,
            }
            | {f"snapshot.{view}": path for view, path in report.written.items()}
        )
        if report.transh is not None:
            for record in report.transh.history:
                mlflow.log_metric("transh_loss", record["loss"], step=record["epoch"])
                if "valid_mrr" in record:
                    mlflow.log_metric("transh_valid_mrr", record["valid_mrr"], step=record["epoch"])
            mlflow.log_metrics(
                {f"transh_test_{k.replace('@', '_at_')}": v for k, v in report.transh.test_metrics.items()}
            )
        mlflow.log_metrics({f"seconds_{family}": s for family, s in report.seconds.items()})
        return run.info.run_id
