"""Explanations of served scores, from what the bound version published (its features and its entity catalogue).

* Scorers with a ``contributions`` method (KCAN): leave-one-out over both distilled stars — each kept neighbour's
  contribution is the served logit minus the logit of the same head with that neighbour removed from its star
  (serving/scoring/kcan.py ``neighbour_contributions``, one batched evaluation). The top 3 per side by absolute
  change are reported, with sign: the numbers are exactly what the served head does, not attention taken at face value.
* Models whose two sides share an ``embedding`` (BPR-MF and the other dot models): the 3 items the user interacted
  with in training (the seen-items view) most similar to the scored item, by cosine of item embeddings. This is a
  similarity, not a decomposition of the score, and the response says so (``method``).
* Anything else: ``None`` — never an invented reason.

Explanations are plain dicts shaped as :class:`serving.schemas.Explanation` (the response schema): building pydantic
models for 100 items × 6 reasons cost more than the head's re-evaluation.
"""

from __future__ import annotations

import numpy as np

from serving.binding import Binding
from serving.catalogue import INTERACT, Catalogue

Reason = dict[str, object]  # a serving.schemas.Neighbour
Explanation = dict[str, object]  # a serving.schemas.Explanation

TOP = 3
EMBEDDING = "embedding"


def item_name(catalogue: Catalogue | None, item_id: int) -> str:
    """An item's display name (items are the first nodes of the CKG, so an item's node id is its item id)."""
    return catalogue.display_name(item_id) if catalogue is not None else f"item {item_id}"


def _neighbour(
    catalogue: Catalogue | None,
    centre: int,
    node: int,
    contribution: float | None = None,
    similarity: float | None = None,
) -> Reason:
    """One reason: the node, its kind, the relation from ``centre``, its display name and its number."""
    known = catalogue is not None
    return {
        "node_id": node,
        "kind": catalogue.kind(node) if known else None,
        "relation": catalogue.relation(centre, node) if known else None,
        "name": catalogue.display_name(node) if known else f"node {node}",
        "contribution": contribution,
        "similarity": similarity,
    }


def _top_side(
    catalogue: Catalogue | None, centre: int, ids: np.ndarray, contributions: np.ndarray, order: np.ndarray
) -> list[Reason]:
    """The ``TOP`` kept neighbour nodes (contribution non-zero) of one star by absolute contribution; ``order`` ranks
    the star's slots by it (a node in two slots, linked by two relations, has one contribution and is listed once)."""
    chosen: dict[int, float] = {}
    for j in order:
        node = int(ids[j])
        if contributions[j] != 0 and node >= 0 and node not in chosen:
            chosen[node] = float(contributions[j])
            if len(chosen) == TOP:
                break
    return [_neighbour(catalogue, centre, node, contribution=value) for node, value in chosen.items()]


def leave_one_out(binding: Binding, user_row: dict[str, np.ndarray], index: np.ndarray) -> list[Explanation]:
    """KCAN explanations of the user against the cached items at ``index``."""
    users = {f: np.repeat(v, len(index), axis=0) for f, v in user_row.items()}
    items = binding.items.gather(index)
    _, user_side, item_side = binding.model.scorer().contributions(users, items)  # type: ignore[attr-defined]
    user_ids, item_ids = users["kcan_nbr_id"].astype(np.int64), items["kcan_nbr_id"].astype(np.int64)
    user_node = int(user_row["kcan_node_id"][0])
    item_nodes = items["kcan_node_id"].astype(np.int64)
    catalogue = binding.catalogue
    user_order = np.argsort(-np.abs(user_side), axis=1, kind="stable")
    item_order = np.argsort(-np.abs(item_side), axis=1, kind="stable")
    return [
        {
            "method": "leave_one_out",
            "item_name": item_name(catalogue, int(binding.items.ids[index[b]])),
            "user_side": _top_side(catalogue, user_node, user_ids[b], user_side[b], user_order[b]),
            "item_side": _top_side(catalogue, int(item_nodes[b]), item_ids[b], item_side[b], item_order[b]),
        }
        for b in range(len(index))
    ]


def nearest_seen_items(binding: Binding, index: np.ndarray, seen: np.ndarray) -> list[Explanation]:
    """The user's training items most similar to each cached item at ``index`` (cosine of item embeddings)."""
    seen_index, found = binding.items.locate(seen)
    seen_index, seen_ids = seen_index[found], seen[found]
    vectors = binding.items.columns[EMBEDDING].astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1).clip(min=1e-12)
    similarity = (vectors[index] @ vectors[seen_index].T) / np.outer(norms[index], norms[seen_index])
    explanations = []
    for b, item_index in enumerate(index):
        other = seen_index != item_index
        order = [j for j in np.argsort(-similarity[b], kind="stable") if other[j]][:TOP]
        reasons = [
            _neighbour(binding.catalogue, -1, int(seen_ids[j]), similarity=float(similarity[b, j]))
            | {"relation": INTERACT}
            for j in order
        ]
        name = item_name(binding.catalogue, int(binding.items.ids[item_index]))
        explanations.append({"method": "nearest_seen_items", "item_name": name, "user_side": reasons, "item_side": []})
    return explanations


def can_explain(binding: Binding) -> str | None:
    """The method that explains the binding's scores (None: it has none)."""
    if hasattr(binding.model.scorer(), "contributions"):
        return "leave_one_out"
    model = binding.model
    if EMBEDDING in model.user_features and EMBEDDING in model.item_features and binding.seen_view is not None:
        return "nearest_seen_items"
    return None


def explain(
    binding: Binding, user_row: dict[str, np.ndarray], index: np.ndarray, seen: np.ndarray | None
) -> list[Explanation | None]:
    """Explanations of the user against the cached items at ``index`` (None each when the model has no method;
    ``seen`` are the user's training items, needed by ``nearest_seen_items``)."""
    method = can_explain(binding)
    if method == "leave_one_out":
        return list(leave_one_out(binding, user_row, index))
    if method == "nearest_seen_items" and seen is not None:
        return list(nearest_seen_items(binding, index, seen))
    return [None] * len(index)
