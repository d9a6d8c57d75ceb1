"""Neighbourhood aggregates of users and items, by DGL message passing over the heterograph.

All the graph-stats features of the catalogue (feature_repo/catalog.py) are computed here, in one place:

users  ui_degree             training interactions              in-degree over (entity, interacted_by, user)
       uu_degree             friends                            in-degree over (user, friend, user)
       two_hop_reach         distinct other users sharing an item   metapath user-interacts-entity-interacted_by-user
       mean_item_transh      mean TransH of interacted items    copy_u + mean over interacted_by
       mean_friend_transh    mean TransH of friends             copy_u + mean over friend
       friends_active_share  share of friends active recently   copy_u(active) + mean over friend
       activity_tercile      0 sparse .. 2 active               training-positive count terciles
items  popularity            training interactions              in-degree over (user, interacts, entity)
       kg_degree             KG triples touching the item       in-degree over (entity, kg, entity) (has inverses)
       relation_histogram    share of KG edges per relation     copy_e(one-hot relation) + sum, normalised
       mean_neighbor_transh  mean TransH of KG neighbours       copy_u + mean over kg
Nodes with no neighbours get 0 (DGL's mean over an empty mailbox).
"""

from __future__ import annotations

import numpy as np
import torch

from training.dgl_compat import dgl, fn
from training.graphs.hetero import FRIEND, INTERACTED_BY, INTERACTS, KG_EDGE, USER


def _mean_over(graph: dgl.DGLGraph, etype: tuple[str, str, str], source: torch.Tensor) -> torch.Tensor:
    """Mean of ``source`` (rows = source nodes of ``etype``) over each destination node's in-neighbours."""
    sub = graph.edge_type_subgraph([etype])
    src_type, _, dst_type = etype
    with sub.local_scope():
        if src_type == dst_type:
            sub.ndata["x"] = source
        else:
            sub.nodes[src_type].data["x"] = source
        sub.update_all(fn.copy_u("x", "m"), fn.mean("m", "out"), etype=etype)
        return sub.nodes[dst_type].data["out"].clone()


def two_hop_reach(graph: dgl.DGLGraph) -> np.ndarray:
    """Distinct other users reachable user -> item -> user, for every user."""
    reach = dgl.metapath_reachable_graph(graph, [INTERACTS, INTERACTED_BY])
    src, dst = reach.edges()
    others = src != dst
    return np.bincount(dst[others].numpy(), minlength=graph.num_nodes(USER)).astype(np.int64)


def user_aggregates(
    graph: dgl.DGLGraph,
    user_emb: torch.Tensor,
    entity_emb: torch.Tensor,
    active: np.ndarray,
    terciles: np.ndarray,
) -> dict[str, np.ndarray]:
    """Graph-stats features of every user (arrays indexed by user id)."""
    active_share = _mean_over(graph, FRIEND, torch.from_numpy(active.astype(np.float32)).unsqueeze(1))
    return {
        "ui_degree": graph.in_degrees(etype=INTERACTED_BY).numpy().astype(np.int64),
        "uu_degree": graph.in_degrees(etype=FRIEND).numpy().astype(np.int64),
        "two_hop_reach": two_hop_reach(graph),
        "mean_item_transh": _mean_over(graph, INTERACTED_BY, entity_emb).numpy(),
        "mean_friend_transh": _mean_over(graph, FRIEND, user_emb).numpy(),
        "friends_active_share": active_share.squeeze(1).numpy(),
        "activity_tercile": terciles.astype(np.int64),
    }


def item_aggregates(
    graph: dgl.DGLGraph, entity_emb: torch.Tensor, n_items: int, n_kg_relations: int
) -> dict[str, np.ndarray]:
    """Graph-stats features of every item (arrays indexed by item id), from the UI graph and the KG."""
    kg = graph.edge_type_subgraph([KG_EDGE])
    relation = kg.edata["rel"] % n_kg_relations  # fold inverse relations onto their forward relation
    with kg.local_scope():
        kg.edata["onehot"] = torch.nn.functional.one_hot(relation, n_kg_relations).float()
        kg.update_all(fn.copy_e("onehot", "m"), fn.sum("m", "hist"))
        counts = kg.ndata["hist"][:n_items]
    histogram = counts / counts.sum(1, keepdim=True).clamp(min=1.0)
    return {
        "popularity": graph.in_degrees(etype=INTERACTS).numpy()[:n_items].astype(np.int64),
        "kg_degree": graph.in_degrees(etype=KG_EDGE).numpy()[:n_items].astype(np.int64),
        "relation_histogram": histogram.numpy(),
        "mean_neighbor_transh": _mean_over(graph, KG_EDGE, entity_emb).numpy()[:n_items],
    }


def active_users(
    interactions_timestamps: np.ndarray, users: np.ndarray, n_users: int, as_of: int, window_s: int
) -> np.ndarray:
    """Boolean per user: any training interaction in (as_of - window, as_of]."""
    recent = (interactions_timestamps > as_of - window_s) & (interactions_timestamps <= as_of)
    return np.bincount(users[recent], minlength=n_users) > 0
