"""Registering, listing, showing and pruning model versions."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from pydantic import BaseModel

from feature_repo.model_views import load_manifest, save_manifest
from graphrec.settings import Settings
from registry.packaging import register_model_version
from registry.promotion import (
    AuditEntry,
    RegistryError,
    RegistryLookupError,
    audit_trail,
    model_version,
    protected_versions,
    registered_model,
    registry_lock,
    version_by_alias,
)
from registry.publish import publish_version
from registry.tracking import configure_mlflow
from serving.contract import DOMAIN_TAG, FEATURE_SERVICE_TAG, MODEL_KIND_TAG
from serving.model_integrity import expected_digests, load_verified_model

KEY_METRICS = ("test_auc", "test_f1", "test_auc/sparse", "test_recall_at_20", "test_recall_at_20/sparse")


def register(settings: Settings, run_id: str, name: str | None = None) -> ModelVersion:
    """Register the run's pyfunc as a new version of ``name`` and publish its serving features to Feast; the run's
    model kind and (a cross-domain model's) domain become version tags."""
    configure_mlflow(settings)
    name = name or settings.registered_model_name
    client = MlflowClient()
    run = _run(client, run_id)
    tags = {MODEL_KIND_TAG: run.data.tags.get(MODEL_KIND_TAG, "")}
    tags |= {DOMAIN_TAG: run.data.tags[DOMAIN_TAG]} if DOMAIN_TAG in run.data.tags else {}
    version = register_model_version(logged_model_uri(run), name, tags)
    publish_version(settings, name, int(version.version), run_id)
    return client.get_model_version(name, version.version)


def _run(client: MlflowClient, run_id: str) -> Run:
    """The tracking run ``run_id``, or :class:`RegistryLookupError` naming it."""
    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise RegistryLookupError(f"no run with id {run_id!r}: `graphrec train` prints the id of its run") from exc


def logged_model_uri(run: Run) -> str:
    """``models:/<model id>`` of the model the run logged last (MLflow 3 keeps logged models apart from the run's
    artifacts, so a run-relative ``runs:/<id>/model`` path no longer names it)."""
    outputs = run.outputs.model_outputs if run.outputs else []
    if not outputs:
        raise RegistryError(f"run {run.info.run_id} logged no model: train with `graphrec train` first")
    return f"models:/{max(outputs, key=lambda output: output.step).model_id}"


def version_aliases(client: MlflowClient, name: str) -> dict[str, list[str]]:
    """Version -> its aliases (search results carry no aliases, the registered model does)."""
    by_version: dict[str, list[str]] = {}
    for alias, version in registered_model(client, name).aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    return by_version


class VersionRow(BaseModel, frozen=True):
    """One line of ``graphrec models list``: rendered as a table row or as JSON, from the same values."""

    version: str
    aliases: list[str]
    model: str
    metrics: dict[str, float]
    feature_service: str
    created: datetime
    run_id: str


def _created(version: ModelVersion) -> datetime:
    return datetime.fromtimestamp(version.creation_timestamp / 1000, tz=UTC)


def list_versions(settings: Settings, name: str) -> list[VersionRow]:
    """Every version of ``name``, newest first, with its aliases, key metrics and feature service."""
    configure_mlflow(settings)
    client = MlflowClient()
    aliases = version_aliases(client, name)
    rows = []
    for version in client.search_model_versions(f"name='{name}'"):
        metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
        rows.append(
            VersionRow(
                version=str(version.version),
                aliases=aliases.get(str(version.version), []),
                model=version.tags.get(MODEL_KIND_TAG, ""),
                metrics={k: metrics[k] for k in KEY_METRICS if k in metrics},
                feature_service=version.tags.get(FEATURE_SERVICE_TAG, ""),
                created=_created(version),
                run_id=version.run_id or "",
            )
        )
    return sorted(rows, key=lambda r: int(r.version), reverse=True)


def resolve_version(client: MlflowClient, reference: str, default_name: str) -> ModelVersion:
    """``NAME``, ``NAME@ALIAS`` or ``NAME/VERSION`` (a bare name means its champion)."""
    if "@" in reference:
        name, alias = reference.split("@", 1)
        return version_by_alias(client, name or default_name, alias)
    if "/" in reference:
        name, version = reference.split("/", 1)
        return model_version(client, name or default_name, version)
    return version_by_alias(client, reference, "champion")


class VerifyReport(BaseModel, frozen=True):
    """What ``graphrec models verify`` found: every file of the version matches its registered SHA-256, and its
    scorer loads as plain data."""

    name: str
    version: str
    files: int
    scorer: str


def verify(settings: Settings, reference: str) -> VerifyReport:
    """Check a version's artefacts against the digests recorded at its registration and load its scorer as data;
    :class:`serving.model_integrity.UnverifiedModel` when they differ (run this before ``mlflow models serve``,
    which executes the model's code)."""
    configure_mlflow(settings)
    client = MlflowClient()
    found = resolve_version(client, reference, settings.registered_model_name)
    name, version = found.name, str(found.version)
    model = load_verified_model(client, mlflow.get_tracking_uri(), name, version)
    files = len(expected_digests(dict(found.tags), f"models:/{name}/{version}"))
    return VerifyReport(name=name, version=version, files=files, scorer=model.spec.kind)


class VersionDetails(BaseModel, frozen=True):
    """What ``graphrec models show`` prints: one version, its run's test metrics, and the model's audit trail."""

    name: str
    version: str
    aliases: list[str]
    run_id: str
    source: str
    created: datetime
    tags: dict[str, str]
    metrics: dict[str, float]
    audit_trail: list[AuditEntry]


def show(settings: Settings, reference: str) -> VersionDetails:
    """A version's details, its run's test metrics (``test_*``), and the model's audit trail of alias moves."""
    configure_mlflow(settings)
    client = MlflowClient()
    version = resolve_version(client, reference, settings.registered_model_name)
    metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
    return VersionDetails(
        name=version.name,
        version=str(version.version),
        aliases=list(version.aliases),
        run_id=version.run_id or "",
        source=version.source or "",
        created=_created(version),
        tags=dict(version.tags),
        metrics={key: value for key, value in sorted(metrics.items()) if key.startswith("test_")},
        audit_trail=audit_trail(client, version.name),
    )


class PruneReport(BaseModel, frozen=True):
    """What ``graphrec models prune`` did: the versions deleted, and each version kept with the reason."""

    deleted: list[str]
    kept: dict[str, str]


def prune(settings: Settings, name: str, keep: int) -> PruneReport:
    """Delete versions beyond the newest ``keep``, with their feature views and online rows, never one that an alias
    holds or that an alias would roll back to (:func:`registry.promotion.protected_versions`)."""
    if keep < 0:
        raise RegistryError(f"--keep must be 0 or more, not {keep}")
    from featurestore.offline import view_dir
    from featurestore.store import apply

    configure_mlflow(settings)
    client = MlflowClient()
    registered_model(client, name)  # an unknown name is an error, not "nothing to prune"
    with registry_lock(settings):
        versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version), reverse=True)
        kept = {str(v.version): f"one of the newest {keep}" for v in versions[:keep]}
        kept |= {v: why for v, why in protected_versions(client, name).items() if v not in kept}
        doomed = [v for v in versions if str(v.version) not in kept]
        if doomed:
            gone = {(name, int(v.version)) for v in doomed}
            entries = load_manifest(settings.work_dir)
            removed = [e for e in entries if (e.model, e.version) in gone]
            save_manifest(settings.work_dir, [e for e in entries if (e.model, e.version) not in gone])
            apply(settings)  # Feast deletes the views (and their online tables) no longer defined
            for entry in removed:
                for spec in (*entry.view_specs(), *entry.extra_specs()):
                    shutil.rmtree(view_dir(settings.offline_dir, spec), ignore_errors=True)
            for version in doomed:
                client.delete_model_version(name, version.version)
        return PruneReport(
            deleted=[str(v.version) for v in doomed], kept=dict(sorted(kept.items(), key=lambda kv: -int(kv[0])))
        )
