"""Is a registered version servable? Its feature service is applied, its views are materialized, and its pyfunc's
signature is exactly the ids plus the features of those views."""

from __future__ import annotations

from mlflow import MlflowClient

from graphrec.settings import Settings
from serving.contract import FEATURE_SERVICE_TAG, ITEM_VIEW_TAG, USER_VIEW_TAG
from serving.pyfunc_model import ITEM_ID, ITEM_PREFIX, USER_ID, USER_PREFIX


def servability_problems(settings: Settings, name: str, version: str) -> list[str]:
    """Every reason the version cannot be served (empty when it can)."""
    from featurestore.store import feature_store

    client = MlflowClient()
    model_version = client.get_model_version(name, str(version))
    tags = model_version.tags
    missing = [t for t in (FEATURE_SERVICE_TAG, USER_VIEW_TAG, ITEM_VIEW_TAG) if t not in tags]
    if missing:
        return [f"tags {', '.join(missing)} are missing (its features were never published)"]
    store = feature_store(settings)
    problems: list[str] = []
    try:
        store.get_feature_service(tags[FEATURE_SERVICE_TAG])
    except Exception:  # noqa: BLE001  Feast raises several not-found types
        problems.append(f"feature service {tags[FEATURE_SERVICE_TAG]!r} is not applied in the Feast registry")
    expected = [USER_ID, ITEM_ID]
    for tag, prefix in ((USER_VIEW_TAG, USER_PREFIX), (ITEM_VIEW_TAG, ITEM_PREFIX)):
        try:
            view = store.get_feature_view(tags[tag])
        except Exception:  # noqa: BLE001
            problems.append(f"feature view {tags[tag]!r} is not applied")
            continue
        if not view.materialization_intervals:
            problems.append(f"feature view {view.name!r} is not materialized")
        expected += [prefix + f.name for f in view.features]
    from mlflow.models import get_model_info

    signature = get_model_info(f"models:/{name}/{version}").signature
    inputs = signature.inputs.input_names() if signature is not None else []
    if sorted(inputs) != sorted(expected):
        problems.append(f"signature columns {sorted(inputs)} do not match the feature service's {sorted(expected)}")
    return problems


LOAD_CHECK_PAIRS = 16


def load_problems(settings: Settings, name: str, version: str) -> list[str]:
    """Why the version's model cannot score (empty when it can): its artefacts must match their registered SHA-256
    and load as plain data, and it must score a few (user, item) pairs from its own published features with finite
    logits. Run after :func:`servability_problems` passes."""
    import mlflow
    import numpy as np
    import pandas as pd

    from registry.evaluation import score_pairs, version_feature_tables
    from serving.model_integrity import load_verified_model

    try:
        model = load_verified_model(MlflowClient(), mlflow.get_tracking_uri(), name, str(version))
        users, items = version_feature_tables(settings, name, str(version))
        pairs = pd.DataFrame(
            {
                USER_ID: np.resize(users.index.to_numpy(), LOAD_CHECK_PAIRS),
                ITEM_ID: np.resize(items.index.to_numpy(), LOAD_CHECK_PAIRS),
            }
        )
        logits = score_pairs(model, users, items, pairs)
    except Exception as error:  # noqa: BLE001  any failure to load or score is a reason to refuse
        return [f"its model does not load and score ({type(error).__name__}: {error})"]
    if not np.isfinite(logits).all():
        return ["its model scores non-finite logits"]
    return []
