"""Neighbourhood aggregates of users and items over the heterograph's edges.

All the graph-stats features of the catalogue (feature_repo/catalog.py) are computed here, in one place:

users  ui_degree             training interactions              in-degree over (entity, interacted_by, user)
       uu_degree             friends                            in-degree over (user, friend, user)
       two_hop_reach         distinct other users sharing an item   metapath user-interacts-entity-interacted_by-user
       mean_item_transh      mean TransH of interacted items    mean over interacted_by
       mean_friend_transh    mean TransH of friends             mean over friend
       friends_active_share  share of friends active recently   mean of the active flag over friend
       activity_tercile      0 sparse .. 2 active               training-positive count terciles
items  popularity            training interactions              in-degree over (user, interacts, entity)
       kg_degree             KG triples touching the item       in-degree over (entity, kg, entity) (has inverses)
       relation_histogram    share of KG edges per relation     in-edge count per relation, normalised
       mean_neighbor_transh  mean TransH of KG neighbours       mean over kg
Nodes with no neighbours get 0. two_hop_reach is exact while that product is affordable and a HyperLogLog
estimate above a work budget (reach.py). The edge lists come from the DGL heterograph (training/graphs/hetero.py); the
arithmetic is blocks.py's, over every node at once here and per node range on Ray (ray_aggregates.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.dgl_compat import dgl
from training.features.blocks import Sources, item_block, user_block
from training.features.reach import EXACT_MAX_PAIRS, TwoHopIndex, two_hop_index
from training.graphs.hetero import FRIEND, INTERACTS, KG_EDGE

Pair = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class GraphEdges:
    """The heterograph's edges as int64 arrays, in edge-id order."""

    interactions: Pair  # (user, item) training pairs; interacted_by holds the same pairs reversed
    friends: Pair  # (user, friend) both directions
    kg: tuple[np.ndarray, np.ndarray, np.ndarray]  # (source entity, destination entity, relation with inverses)


def graph_edges(graph: dgl.DGLGraph) -> GraphEdges:
    """The edge lists the aggregates read, taken from the heterograph."""

    def pair(etype: tuple[str, str, str]) -> Pair:
        src, dst = graph.edges(etype=etype, order="eid")
        return src.numpy().astype(np.int64), dst.numpy().astype(np.int64)

    kg_src, kg_dst = pair(KG_EDGE)
    return GraphEdges(pair(INTERACTS), pair(FRIEND), (kg_src, kg_dst, graph.edges[KG_EDGE].data["rel"].numpy()))


def reach_index(edges: GraphEdges, sources: Sources, exact_max_pairs: int = EXACT_MAX_PAIRS) -> TwoHopIndex:
    """The two-hop reach index of every user's interactions: exact within ``exact_max_pairs``, else sketched."""
    users, items = edges.interactions
    return two_hop_index(items, users, sources.n_items, sources.n_users, exact_max_pairs)


def user_aggregates(edges: GraphEdges, sources: Sources, reach: TwoHopIndex) -> dict[str, np.ndarray]:
    """Graph-stats features of every user (arrays indexed by user id); ``reach`` from ``reach_index``."""
    users, items = edges.interactions
    return user_block(0, sources.n_users, (items, users), edges.friends, reach, sources)


def item_aggregates(edges: GraphEdges, sources: Sources) -> dict[str, np.ndarray]:
    """Graph-stats features of every item (arrays indexed by item id), from the UI graph and the KG."""
    on_items = edges.kg[1] < sources.n_items
    kg = (edges.kg[0][on_items], edges.kg[1][on_items], edges.kg[2][on_items])
    return item_block(0, sources.n_items, edges.interactions, kg, sources)


def active_users(
    interactions_timestamps: np.ndarray, users: np.ndarray, n_users: int, as_of: int, window_s: int
) -> np.ndarray:
    """Boolean per user: any training interaction in (as_of - window, as_of]."""
    recent = (interactions_timestamps > as_of - window_s) & (interactions_timestamps <= as_of)
    return np.bincount(users[recent], minlength=n_users) > 0
