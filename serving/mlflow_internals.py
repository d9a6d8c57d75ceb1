"""Every private name of MLflow that serving relies on, in one place, behind a version check.

MLflow 3.17 caches one store per tracking (and registry) URI for the whole process, and a SQL store's engine pools its
database connections, also per URI. After the SQLite file of a registry is replaced (a restore, a copy moved into
place), the pooled connections keep reading the old, unlinked file, so promotions made in the new file are never seen.
MLflow has no public way to reach the stores a client reads through; :func:`release_sql_connections` takes them from
the client here. No other module names a private attribute of MLflow (tests/test_architecture.py checks it).
Importing this module fails at once on an MLflow it was not written for.
"""

from __future__ import annotations

import mlflow
from mlflow import MlflowClient
from sqlalchemy.engine import Engine

SUPPORTED_MLFLOW = ("3.17.",)


class UnsupportedMlflow(ImportError):
    """The installed MLflow is not a version these internals were written for."""


def check_mlflow_version(installed: str | None = None) -> None:
    """Raise :class:`UnsupportedMlflow` unless ``installed`` (default: the installed MLflow) is supported."""
    found = installed or mlflow.__version__
    if not found.startswith(SUPPORTED_MLFLOW):
        wanted = "/".join(prefix + "x" for prefix in SUPPORTED_MLFLOW)
        raise UnsupportedMlflow(
            f"serving/mlflow_internals.py was written for mlflow {wanted}, found mlflow {found}: check how "
            "MlflowClient holds its stores in the new version, then update SUPPORTED_MLFLOW"
        )


check_mlflow_version()  # the one import-time check, as in featurestore/internals.py


def release_sql_connections(client: MlflowClient) -> int:
    """Close the pooled connections of the SQL stores ``client`` reads through (its tracking and registry stores,
    shared by every client of the same URI in the process), so the next query opens the database file anew. Returns
    how many engines were disposed (0 for a REST registry)."""
    stores = (client._tracking_client.store, client._get_registry_client().store)
    engines = {id(engine): engine for store in stores if isinstance(engine := getattr(store, "engine", None), Engine)}
    for engine in engines.values():
        engine.dispose()
    return len(engines)
