"""Cross-domain runs in MLflow (issue 13): train a cross-domain model (CD-GNN or a variant) for one target domain of the
configured two-domain dataset, log it like every model and optionally register it; and log a finished
``graphrec crossdomain evaluate`` sweep (its report, its AUC-vs-kept-share figure, mean test metrics per share).

Everything after the fit is the single-domain path: :func:`registry.runs.log_training_run` logs the run, its dot
scorer and feature tables; :func:`registry.versions.register` registers the version and publishes its per-version
Feast views, feature service, seen-items view and catalogue. The one addition is the domain: the run and its version
carry ``serving.contract.DOMAIN_TAG`` (the target domain's name), which the promotion gate reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np

from graphrec.settings import Settings
from registry.runs import TrainedRun, log_training_run, metric_key
from registry.tracking import ensure_experiment, git_commit
from registry.train import TrainOutcome
from serving.contract import DOMAIN_TAG
from training.crossdomain.export import export_serving
from training.crossdomain.platform import DomainFit, domain_index, fit_domain
from training.crossdomain.report import Sweep
from training.data.load import load_dataset
from training.data.splits import make_split


@dataclass(frozen=True)
class DomainOutcome(TrainOutcome):
    """What :func:`train_and_log_domain` did, and the fitted model (its callers compare the served form with it)."""

    fit: DomainFit


def train_and_log_domain(
    settings: Settings,
    target: str,
    variant: str = "cdgnn",
    epochs: int = 5,
    seed: int | None = None,
    register_version: bool = False,
    **overrides: object,
) -> DomainOutcome:
    """Fit ``variant`` for the domain named ``target`` on the platform's CTR split (seeded by ``seed``, the settings'
    by default), log it, and register it under the settings' model name when asked."""
    seed = settings.seed if seed is None else seed
    dataset = load_dataset(settings)
    domain = domain_index(dataset, target)
    name = str(dataset.domains[domain]) if len(dataset.domains) > domain else str(domain)
    split = make_split(dataset.interactions, seed, "ctr")
    fitted = fit_domain(dataset, split, domain, variant, epochs, seed=seed, **overrides)
    run = TrainedRun(
        model_name=variant,
        seed=seed,
        config=fitted.model.config.model_dump() | {"epochs": epochs, "target_domain": name},
        history=fitted.history,
        valid=fitted.valid,
        test=fitted.test,
        seconds_per_epoch=fitted.seconds_per_epoch,
        best_epoch=fitted.best_epoch,
        dataset_name=dataset.name,
        dataset_fingerprint=dataset.fingerprint,
        export=export_serving(fitted.model, domain),
        protocol="ctr",
        tags={DOMAIN_TAG: name},
    )
    run_id = log_training_run(settings, run)
    version = None
    if register_version:
        from registry.versions import register

        version = register(settings, run_id, settings.registered_model_name)
    return DomainOutcome(run, run_id, version, fitted)


SWEEP_EXPERIMENT = "graphrec-crossdomain"
SWEEP_METRICS = ("AUC", "MRR", "HR@10", "Recall@20")


def sweep_metrics(sweep: Sweep) -> dict[str, float]:
    """Mean test metric over seeds per kept share, target domain and model, keyed
    ``<domain>/keep_<share>/<model>/<metric>`` (MLflow-safe: ``@`` spelt ``_at_``)."""
    values: dict[str, list[float]] = {}
    for keep, runs in sweep.runs.items():
        for run in runs:
            for domain, result in run.domains.items():
                for name in SWEEP_METRICS:
                    value = (result.test | result.full).get(name, float("nan"))
                    key = f"{domain}/keep_{keep:g}/{run.model}/{metric_key(name.lower())}"
                    values.setdefault(key, []).append(value)
    return {key: float(np.nanmean(seeds)) for key, seeds in values.items() if not np.isnan(seeds).all()}


def log_sweep(settings: Settings, sweep: Sweep, report: Path, figure: Path | None, params: dict[str, object]) -> str:
    """Log a finished sweep as one run of the cross-domain experiment: ``params``, the command, the mean test metrics
    per share, the markdown report and (with more than one share) the AUC-vs-kept-share figure; the run id."""
    experiment_id = ensure_experiment(settings, SWEEP_EXPERIMENT)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"sweep-{report.stem}") as active:
        mlflow.log_params(params | {"keeps": ",".join(f"{k:g}" for k in sweep.runs)})
        mlflow.set_tags({"graphrec.command": sweep.command[:5000], "git_commit": git_commit()})
        mlflow.log_metrics(sweep_metrics(sweep) | {"wall_seconds": sweep.seconds})
        mlflow.log_artifact(str(report), "report")
        if figure is not None:
            mlflow.log_artifact(str(figure), "plots")
        return active.info.run_id
