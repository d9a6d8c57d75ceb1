"""The serving form of a fitted cross-domain model for one target domain: per-entity feature tables and the existing
``dot`` scorer (``serving/scoring/embedding.py``), because every variant scores a pair as ⟨user vector, item vector⟩.

The domain is fixed per export (one registered model per target domain), not given in the request: a user's vector
depends on the domain (its head, and which views the user has there), so one table pair serves one domain, and a
request naming an item of the other domain finds no item row instead of being scored with the wrong head. The user
table holds the *combined* representation (own view, source view, or their mean, through the head), computed ahead,
so a user cold in the domain is served from their source-domain history with no graph at request time.
"""

from __future__ import annotations

import numpy as np

from training.crossdomain.model import CrossDomainModel
from training.models.base import ServingExport
from training.models.bpr_mf import embedding_frame


def export_serving(model: CrossDomainModel, domain: int) -> ServingExport:
    """User vectors for ``domain`` keyed by user id, item vectors keyed by the dataset's (global) item id."""
    users, items = model.user_item_matrices(domain)
    return ServingExport(
        user_features=embedding_frame("user_id", np.arange(len(users)), embedding=users.numpy()),
        item_features=embedding_frame("item_id", model.task.items[domain], embedding=items.numpy()),
        scorer_kind="dot",
        scorer_state={"item_bias": False},
    )
