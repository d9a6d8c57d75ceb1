"""The feature catalogue: every entity, feature view and feature name, defined once.

Feature jobs (training/features) write offline tables with exactly these columns; the Feast definitions
(feature_repo/definitions.py) are generated from these specs; serving reads features by these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ValueType(str, Enum):
    """Value types used by graphrec features (mapped to Feast types in definitions.py)."""

    int64 = "int64"
    float32 = "float32"
    float32_list = "float32_list"
    int64_list = "int64_list"  # id arrays (e.g. neighbour or seen item ids): exact for every id below 2**63


@dataclass(frozen=True)
class EntitySpec:
    """A Feast entity and its join key."""

    name: str
    join_key: str
    description: str


@dataclass(frozen=True)
class FeatureSpec:
    """One feature column."""

    name: str
    dtype: ValueType
    description: str


@dataclass(frozen=True)
class ViewSpec:
    """A feature view: which entity it is keyed by, which job family writes it, and its features."""

    name: str
    entity: EntitySpec
    family: str
    features: tuple[FeatureSpec, ...]
    description: str

    @property
    def feature_names(self) -> list[str]:
        """Names of the view's feature columns."""
        return [f.name for f in self.features]


EVENT_TIMESTAMP = "event_timestamp"
CREATED_TIMESTAMP = "created"

USER = EntitySpec("user", "user_id", "A user of the recommender (0-based dataset index).")
ITEM = EntitySpec("item", "item_id", "A recommendable item; items are KG entities 0..n_items-1.")
ENTITIES = (USER, ITEM)

TRANSH_FAMILY = "transh"
GRAPH_STATS_FAMILY = "graph_stats"
INTENT_FAMILY = "intent"

USER_TRANSH = ViewSpec(
    name="user_transh",
    entity=USER,
    family=TRANSH_FAMILY,
    features=(FeatureSpec("transh", ValueType.float32_list, "TransH embedding of the user node of the CKG."),),
    description="TransH embeddings of users, trained on the collaborative knowledge graph.",
)
ITEM_TRANSH = ViewSpec(
    name="item_transh",
    entity=ITEM,
    family=TRANSH_FAMILY,
    features=(FeatureSpec("transh", ValueType.float32_list, "TransH embedding of the item entity."),),
    description="TransH embeddings of items, trained on the collaborative knowledge graph.",
)
USER_GRAPH_STATS = ViewSpec(
    name="user_graph_stats",
    entity=USER,
    family=GRAPH_STATS_FAMILY,
    features=(
        FeatureSpec("ui_degree", ValueType.int64, "Training interactions of the user (UI graph degree)."),
        FeatureSpec("uu_degree", ValueType.int64, "Friends of the user (UU graph degree)."),
        FeatureSpec(
            "two_hop_reach",
            ValueType.int64,
            "Distinct users reached user -> item -> user (a HyperLogLog estimate on large graphs).",
        ),
        FeatureSpec("mean_item_transh", ValueType.float32_list, "Mean TransH embedding of interacted items."),
        FeatureSpec("mean_friend_transh", ValueType.float32_list, "Mean TransH embedding of the user's friends."),
        FeatureSpec("friends_active_share", ValueType.float32, "Share of friends active in the last window."),
        FeatureSpec("activity_tercile", ValueType.int64, "0 sparse, 1 medium, 2 active (training positives)."),
    ),
    description="Neighbourhood aggregates of users over the UI and UU graphs.",
)
ITEM_GRAPH_STATS = ViewSpec(
    name="item_graph_stats",
    entity=ITEM,
    family=GRAPH_STATS_FAMILY,
    features=(
        FeatureSpec("popularity", ValueType.int64, "Training interactions of the item."),
        FeatureSpec("kg_degree", ValueType.int64, "KG triples touching the item (both directions)."),
        FeatureSpec("relation_histogram", ValueType.float32_list, "Share of the item's KG edges per relation."),
        FeatureSpec("mean_neighbor_transh", ValueType.float32_list, "Mean TransH embedding of KG neighbours."),
    ),
    description="Neighbourhood aggregates of items over the UI graph and the knowledge graph.",
)
USER_INTENT = ViewSpec(
    name="user_intent",
    entity=USER,
    family=INTENT_FAMILY,
    features=(
        FeatureSpec("theta", ValueType.float32_list, "The user's intent mixture over the K topics (sums to 1)."),
        FeatureSpec("dominant_topic", ValueType.int64, "The topic with the largest share of the mixture."),
        FeatureSpec("dominant_weight", ValueType.float32, "The dominant topic's share of the mixture."),
    ),
    description="User-intent topics: the mixture of the tag topic model with a logistic-normal prior (issue 12).",
)
VIEWS = (USER_TRANSH, ITEM_TRANSH, USER_GRAPH_STATS, ITEM_GRAPH_STATS, USER_INTENT)
FAMILIES = (TRANSH_FAMILY, GRAPH_STATS_FAMILY, INTENT_FAMILY)

GRAPH_FEATURES_SERVICE = "graph_features"


def view(name: str) -> ViewSpec:
    """The spec of one feature view by name."""
    for spec in VIEWS:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown feature view {name!r}; known: {', '.join(v.name for v in VIEWS)}")
