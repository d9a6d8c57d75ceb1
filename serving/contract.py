"""The registry <-> serving contract: what a registered model version carries so the service can score with it.

A version of the registered model ``Settings.registered_model_name`` is servable when:
- its artefact is a pyfunc whose python model is :class:`serving.pyfunc_model.ScorerModel` (``user_features`` and
  ``item_features`` name the feature columns its scorer reads from each side);
- its tags name its Feast objects: ``FEATURE_SERVICE_TAG`` (the feature service), ``USER_VIEW_TAG`` and
  ``ITEM_VIEW_TAG`` (per-version feature views keyed by ``user_id`` / ``item_id`` whose feature names are exactly
  ``ScorerModel.user_features`` / ``item_features``), so two versions never read each other's features (names from
  ``feature_repo.model_views.version_view_names``);
- those views are applied in the Feast registry and materialized into the online store.
Aliases ``champion`` and ``challenger`` pick what is served.

Optional, published by registration since issue 14: ``SEEN_VIEW_TAG`` names a view keyed by user whose
``seen_items`` are the user's training interactions (/v1/recommend excludes them) and ``activity_tercile`` their
tercile, and ``CATALOGUE_TAG`` holds the SHA-256 of each file of the entity catalogue (serving/catalogue.py) logged
under the run's ``CATALOGUE_ARTIFACT`` folder. A version without them is served without seen-item exclusion and
explains with ids only.

Optional since issue 13: ``DOMAIN_TAG`` names the one domain of a two-domain dataset a version scores (a cross-domain
model is registered per target domain; its item view holds that domain's items only). The promotion gate scores such a
version on the frozen rows of that domain and refuses to compare it with a version of another domain.
"""

from __future__ import annotations

CHAMPION = "champion"
CHALLENGER = "challenger"

FEATURE_SERVICE_TAG = "graphrec.feature_service"
USER_VIEW_TAG = "graphrec.user_view"
ITEM_VIEW_TAG = "graphrec.item_view"
MODEL_KIND_TAG = "graphrec.model"
DOMAIN_TAG = "graphrec.domain"
SEEN_VIEW_TAG = "graphrec.seen_view"
SEEN_FEATURE = "seen_items"
ACTIVITY_TERCILE = "activity_tercile"  # also in the seen view: 0 sparse, 1 medium, 2 active
CATALOGUE_TAG = "graphrec.catalogue_sha256"
CATALOGUE_ARTIFACT = "explain"
AUDIT_TAG_PREFIX = "graphrec.audit."  # registered-model tags: one JSON record per alias move (registry/promotion.py)

# Shared catalogue features serving uses for its fallback ranking (feature_repo/catalog.py names them).
FALLBACK_VIEW = "item_graph_stats"
FALLBACK_POPULARITY = "popularity"
