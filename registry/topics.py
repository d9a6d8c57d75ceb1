"""MLflow runs of the user-intent topic model (issue 12): a fit (``graphrec topics train``) and an evaluation
(``graphrec topics evaluate``), in their own experiment beside the recommenders'."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import mlflow

from graphrec.settings import Settings
from registry.tracking import ensure_experiment, git_commit
from training.topics.evaluate import VariantResult
from training.topics.fit import TopicFit

TOPICS_EXPERIMENT = "graphrec-topics"


def log_topic_fit(settings: Settings, fit: TopicFit, dataset: str, fingerprint: str, folder: Path) -> str:
    """Log the fit's config, loss curve, final terms, top words and saved arrays (``folder``) as a run of the topics
    experiment; returns the run id."""
    experiment_id = ensure_experiment(settings, TOPICS_EXPERIMENT)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"topics-{dataset}") as run:
        mlflow.log_params({f"config.{k}": v for k, v in fit.config.model_dump().items()})
        for record in fit.history:
            mlflow.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=int(record["epoch"]))
        mlflow.log_metrics({"vocabulary": len(fit.vocabulary), "final_loss": fit.history[-1]["loss"]})
        mlflow.set_tags(
            {
                "graphrec.kind": "topics",
                "graphrec.dataset": dataset,
                "graphrec.dataset_fingerprint": fingerprint,
                "git_commit": git_commit(),
            }
        )
        with tempfile.TemporaryDirectory() as scratch:
            words = Path(scratch) / "top_words.json"
            words.write_text(json.dumps(fit.top_words(fit.config.top_words), indent=1))
            mlflow.log_artifact(str(words))
        mlflow.log_artifacts(str(folder), "model")
        return run.info.run_id


def log_topic_evaluation(settings: Settings, results: list[VariantResult], dataset: str, report: Path) -> str:
    """Log every variant's metrics (``<variant>.<group>.<metric>``, topic-level ``<variant>.npmi``) and the report as
    a run of the topics experiment; returns the run id."""
    experiment_id = ensure_experiment(settings, TOPICS_EXPERIMENT)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"topics-evaluate-{dataset}") as run:
        for result in results:
            name = re.sub(r"\W+", "_", result.name).strip("_")  # MLflow keys: 'full (GNN + ...)' -> 'full_GNN_...'

            metrics = {f"{name}.npmi": result.npmi, f"{name}.diversity": result.diversity}
            metrics |= {f"{name}.seconds": result.seconds}
            for group, values in result.groups.items():
                metrics |= {f"{name}.{group}.{key}": float(value) for key, value in values.items()}
            mlflow.log_metrics(metrics)
        mlflow.set_tags({"graphrec.kind": "topics-evaluation", "graphrec.dataset": dataset, "git_commit": git_commit()})
        mlflow.log_artifact(str(report))
        return run.info.run_id
