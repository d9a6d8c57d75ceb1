"""The neighbourhood aggregates of one block of users or items, from edge lists: the kernel both engines run.

The local engine runs each kernel once over every node (aggregates.py); the Ray engine runs it once per node range,
in parallel, over the edges whose destination lies in the range (ray_aggregates.py). A node's value depends only on
its own in-edges, the broadcast source tables and the two-hop index (reach.py), and every sum is taken by a scipy CSR
product whose per-row order is its column order, in float64, rounded to float32 once: so a node gets the same bits
whichever block it is computed in, which is what makes the Ray engine's online bytes equal the local engine's.

No DGL here (Ray workers import this module alone); the edge lists come from the heterograph (aggregates.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from training.features.reach import TwoHopIndex, incidence, two_hop_reach


@dataclass(frozen=True)
class Sources:
    """Everything a block reads besides its own in-edges (broadcast to every Ray task)."""

    user_emb: np.ndarray  # (n_users, d) float32 TransH of users
    entity_emb: np.ndarray  # (n_entities, d) float32 TransH of entities (items first)
    active: np.ndarray  # (n_users,) bool: any training interaction in the recent window
    terciles: np.ndarray  # (n_users,) int64 activity tercile
    n_items: int
    n_kg_relations: int

    @property
    def n_users(self) -> int:
        """Users in the dataset."""
        return len(self.user_emb)


def _in_matrix(dst: np.ndarray, src: np.ndarray, n_dst: int, n_src: int) -> sp.csr_matrix:
    """Edge-count matrix (rows = destinations of the block, columns = sources), duplicates summed, columns sorted."""
    matrix = sp.csr_matrix((np.ones(len(src), dtype=np.float64), (dst, src)), shape=(n_dst, n_src))
    matrix.sum_duplicates()
    return matrix


def scatter_mean(dst: np.ndarray, src: np.ndarray, n_dst: int, source: np.ndarray) -> np.ndarray:
    """Mean of ``source`` rows over each destination's in-edges (0 for none), float32; ``dst`` is block-local."""
    table = source.reshape(len(source), -1).astype(np.float64)
    sums = _in_matrix(dst, src, n_dst, len(source)) @ table
    counts = np.bincount(dst, minlength=n_dst).astype(np.float64)
    means = (sums / np.maximum(counts, 1.0)[:, None]).astype(np.float32)
    return means if source.ndim == 2 else means[:, 0]


def user_block(
    low: int,
    high: int,
    interactions: tuple[np.ndarray, np.ndarray],
    friends: tuple[np.ndarray, np.ndarray],
    reach: TwoHopIndex,
    sources: Sources,
) -> dict[str, np.ndarray]:
    """Graph-stats features of users ``low..high-1`` from their in-edges: ``interactions`` (item, user) and
    ``friends`` (friend, user), destinations in the range; ``reach`` is built from every interaction (reach.py)."""
    n = high - low
    items, users = interactions[0], interactions[1] - low
    friend, user = friends[0], friends[1] - low
    user_items = incidence(users, items, n, sources.n_items)
    return {
        "ui_degree": np.bincount(users, minlength=n).astype(np.int64),
        "uu_degree": np.bincount(user, minlength=n).astype(np.int64),
        "two_hop_reach": two_hop_reach(user_items, reach),
        "mean_item_transh": scatter_mean(users, items, n, sources.entity_emb),
        "mean_friend_transh": scatter_mean(user, friend, n, sources.user_emb),
        "friends_active_share": scatter_mean(user, friend, n, sources.active.astype(np.float32)),
        "activity_tercile": sources.terciles[low:high].astype(np.int64),
    }


def item_block(
    low: int,
    high: int,
    interactions: tuple[np.ndarray, np.ndarray],
    kg: tuple[np.ndarray, np.ndarray, np.ndarray],
    sources: Sources,
) -> dict[str, np.ndarray]:
    """Graph-stats features of items ``low..high-1`` from their in-edges: ``interactions`` (user, item) and ``kg``
    (source entity, item, relation id with inverses offset by the relation count), destinations in the range."""
    n = high - low
    items = interactions[1] - low
    src, dst, relation = kg[0], kg[1] - low, kg[2] % sources.n_kg_relations  # inverses fold onto their relation
    counts = _in_matrix(dst, relation, n, sources.n_kg_relations).toarray()
    histogram = counts / np.maximum(counts.sum(1, keepdims=True), 1.0)
    return {
        "popularity": np.bincount(items, minlength=n).astype(np.int64),
        "kg_degree": np.bincount(dst, minlength=n).astype(np.int64),
        "relation_histogram": histogram.astype(np.float32),
        "mean_neighbor_transh": scatter_mean(dst, src, n, sources.entity_emb),
    }
