"""Per-model-version feature views: the manifest of registered versions whose serving features live in Feast.

Each registered model version publishes its serving form (docs/ARCHITECTURE.md §3, §4) as two feature views keyed by
user and item, named after the version (version_view_names), so a champion and a challenger never read each other's
features. The manifest (``<work_dir>/model_views.json``) lists them; feature_repo/definitions.py turns every
entry into Feast objects, so a stock ``feast apply`` keeps them, and removing an entry (``graphrec models prune``)
deletes them.

Besides the scorer's two views, a version may publish a ``<base>_seen`` view keyed by user: the items each user
interacted with in the version's training split (``seen_items``), which /v1/recommend excludes. It is not part of the
version's feature service, which names exactly what the scorer reads.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from feature_repo.catalog import ITEM, USER, EntitySpec, FeatureSpec, ValueType, ViewSpec
from feature_repo.catalog import view as catalog_view

MANIFEST = "model_views.json"
MODEL_FAMILY_PREFIX = "model:"


def version_view_names(model_name: str, version: int | str) -> tuple[str, str, str]:
    """(feature service, user view, item view) names of one registered version."""
    base = f"{model_name.replace('-', '_')}_v{version}"
    return base, f"{base}_user", f"{base}_item"


def seen_view_name(model_name: str, version: int | str) -> str:
    """The name of one registered version's seen-items view (training interactions per user)."""
    return f"{version_view_names(model_name, version)[0]}_seen"


@dataclass(frozen=True)
class ModelViews:
    """One registered version's serving features: name -> value type, per side."""

    model: str
    version: int
    user_features: dict[str, str]
    item_features: dict[str, str]
    seen_features: dict[str, str] = field(default_factory=dict)  # empty: the version publishes no seen view

    @property
    def names(self) -> tuple[str, str, str]:
        """(feature service, user view, item view)."""
        return version_view_names(self.model, self.version)

    def view_specs(self) -> tuple[ViewSpec, ViewSpec]:
        """The user and item ViewSpecs of this version."""
        _, user_view, item_view = self.names
        return self._spec(user_view, USER, self.user_features), self._spec(item_view, ITEM, self.item_features)

    def extra_specs(self) -> tuple[ViewSpec, ...]:
        """Views published with the version that its scorer does not read: the seen-items view, when published."""
        if not self.seen_features:
            return ()
        return (self._spec(seen_view_name(self.model, self.version), USER, self.seen_features),)

    def _spec(self, name: str, entity: EntitySpec, features: dict[str, str]) -> ViewSpec:
        return ViewSpec(
            name=name,
            entity=entity,
            family=f"{MODEL_FAMILY_PREFIX}{self.model}/v{self.version}",
            features=tuple(
                FeatureSpec(f, ValueType(t), f"{self.model} v{self.version} serving feature")
                for f, t in features.items()
            ),
            description=f"Serving features of {self.model} version {self.version}.",
        )


def load_manifest(work_dir: Path) -> list[ModelViews]:
    """Every published model version listed in ``work_dir``'s manifest (empty when nothing was published)."""
    path = work_dir / MANIFEST
    if not path.exists():
        return []
    return [ModelViews(**entry) for entry in json.loads(path.read_text())]


def save_manifest(work_dir: Path, entries: list[ModelViews]) -> None:
    """Write ``work_dir``'s manifest atomically (temporary file + rename)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    payload = json.dumps([asdict(e) for e in sorted(entries, key=lambda e: (e.model, e.version))], indent=1)
    handle, temporary = tempfile.mkstemp(dir=work_dir, prefix=f".{MANIFEST}.")
    with os.fdopen(handle, "w") as out:
        out.write(payload)
    os.replace(temporary, work_dir / MANIFEST)


def view_spec(work_dir: Path, name: str) -> ViewSpec:
    """The spec of a feature view by name: a catalogue view or a model version's view published in ``work_dir``."""
    for entry in load_manifest(work_dir):
        for spec in (*entry.view_specs(), *entry.extra_specs()):
            if spec.name == name:
                return spec
    return catalog_view(name)
