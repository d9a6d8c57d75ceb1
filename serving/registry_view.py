"""What the model page shows about the registry: every version with its aliases, test metrics overall and per activity
tercile, and the features it reads; and the audit trail of alias moves with each move's gate result.

Read through the service's :class:`serving.binding.ModelSource` (the same registry checks, the same errors: a
registry that cannot be read is a :class:`serving.binding.RegistryUnavailable`), never cached: the page is for people.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from serving.binding import ModelSource, RegistryUnavailable
from serving.contract import (
    AUDIT_TAG_PREFIX,
    FEATURE_SERVICE_TAG,
    ITEM_VIEW_TAG,
    MODEL_KIND_TAG,
    SEEN_VIEW_TAG,
    USER_VIEW_TAG,
)

METRICS = ("auc", "f1", "recall_at_20", "ndcg_at_20")  # as logged by registry/runs.py: test_<metric>[/<tercile>]
TERCILES = ("sparse", "medium", "active")


@dataclass(frozen=True)
class VersionView:
    """One registered version as the model page lists it."""

    version: str
    aliases: list[str]
    model: str
    created: str
    metrics: dict[str, list[float | None]]  # metric -> [overall, sparse, medium, active]
    views: dict[str, str]  # feature service, user view, item view, seen view
    user_features: list[str] = field(default_factory=list)
    item_features: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RegistryPage:
    """The model page's content."""

    name: str
    versions: list[VersionView]
    audit: list[dict[str, object]]  # oldest first: alias, from/to version, who, when, action, reason, gate


def _metrics(logged: dict[str, float]) -> dict[str, list[float | None]]:
    return {
        metric: [logged.get(f"test_{metric}")] + [logged.get(f"test_{metric}/{t}") for t in TERCILES]
        for metric in METRICS
        if f"test_{metric}" in logged
    }


def registry_page(source: ModelSource, name: str) -> RegistryPage:
    """Every version of ``name`` (newest first) and its audit trail; an empty page when nothing is registered."""
    client = source.client
    try:
        model = client.get_registered_model(name)
        versions = client.search_model_versions(f"name='{name}'")
    except Exception as error:
        if "RESOURCE_DOES_NOT_EXIST" in str(getattr(error, "error_code", "")):
            return RegistryPage(name, [], [])
        raise RegistryUnavailable(f"MLflow registry unreachable: {type(error).__name__}") from error
    aliases: dict[str, list[str]] = {}
    for alias, version in model.aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for version in sorted(versions, key=lambda v: int(v.version), reverse=True):
        try:
            run = client.get_run(version.run_id) if version.run_id else None
        except Exception as error:
            raise RegistryUnavailable(f"MLflow tracking store unreachable: {type(error).__name__}") from error
        tags = version.tags
        run_tags = run.data.tags if run is not None else {}
        rows.append(
            VersionView(
                version=str(version.version),
                aliases=sorted(aliases.get(str(version.version), [])),
                model=tags.get(MODEL_KIND_TAG, ""),
                created=datetime.fromtimestamp(version.creation_timestamp / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M"),
                metrics=_metrics(run.data.metrics if run is not None else {}),
                views={
                    label: tags[tag]
                    for label, tag in (
                        ("feature service", FEATURE_SERVICE_TAG),
                        ("user view", USER_VIEW_TAG),
                        ("item view", ITEM_VIEW_TAG),
                        ("seen items", SEEN_VIEW_TAG),
                    )
                    if tag in tags
                },
                user_features=[f for f in run_tags.get("graphrec.user_features", "").split(",") if f],
                item_features=[f for f in run_tags.get("graphrec.item_features", "").split(",") if f],
            )
        )
    audit = [json.loads(model.tags[key]) for key in sorted(model.tags) if key.startswith(AUDIT_TAG_PREFIX)]
    return RegistryPage(name, rows, audit)
