"""The collaborative knowledge graph (CKG): users and KG entities in one node space, as typed triples.

Node ids: entities ``0..n_entities-1`` (items are ``0..n_items-1``), then users ``n_entities..n_entities+n_users-1``.
Relation ids: KG relations ``0..R-1``, their inverses ``R..2R-1``, ``interact`` (user -> item) ``2R`` and
``interacted_by`` (item -> user) ``2R+1``. Interact edges come from training positives only, so no validation or test
pair is ever an edge of a graph a model or a feature job sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.data.dataset import Dataset


@dataclass(frozen=True)
class CollaborativeKG:
    """Triples over the joint node space plus the counts needed to interpret node and relation ids."""

    triples: np.ndarray  # (N, 3) int64: head, relation, tail
    n_entities: int
    n_users: int
    n_items: int
    n_kg_relations: int
    relation_names: tuple[str, ...]

    @property
    def n_nodes(self) -> int:
        """Entities plus users."""
        return self.n_entities + self.n_users

    @property
    def n_relations(self) -> int:
        """KG relations, their inverses, interact and interacted_by."""
        return 2 * self.n_kg_relations + 2

    @property
    def interact_relation(self) -> int:
        """Relation id of user -> item edges."""
        return 2 * self.n_kg_relations

    def user_node(self, users: np.ndarray) -> np.ndarray:
        """Node ids of user indices."""
        return np.asarray(users, dtype=np.int64) + self.n_entities

    def to_dgl(self) -> dgl.DGLGraph:  # noqa: F821  (dgl imported lazily through training.dgl_compat)
        """A homogeneous DGL graph, edges head -> tail, with the relation id in ``edata['rel']``."""
        import torch

        from training.dgl_compat import dgl

        graph = dgl.graph(
            (torch.from_numpy(self.triples[:, 0]), torch.from_numpy(self.triples[:, 2])), num_nodes=self.n_nodes
        )
        graph.edata["rel"] = torch.from_numpy(self.triples[:, 1])
        return graph


def build_ckg(dataset: Dataset, train_positives: pd.DataFrame) -> CollaborativeKG:
    """KG triples with inverses, plus interact/interacted_by edges of the training positives only."""
    kg = dataset.kg[["head", "relation", "tail"]].to_numpy(dtype=np.int64)
    n_rel = dataset.n_relations
    inverse = np.stack([kg[:, 2], kg[:, 1] + n_rel, kg[:, 0]], axis=1)
    pairs = train_positives[["user", "item"]].drop_duplicates().to_numpy(dtype=np.int64)
    users = pairs[:, 0] + dataset.n_entities
    interact = np.stack([users, np.full(len(pairs), 2 * n_rel), pairs[:, 1]], axis=1)
    interacted_by = np.stack([pairs[:, 1], np.full(len(pairs), 2 * n_rel + 1), users], axis=1)
    names = list(dataset.relation_names) or [f"r{r}" for r in range(n_rel)]
    names = names + [f"inverse:{n}" for n in names] + ["interact", "interacted_by"]
    return CollaborativeKG(
        triples=np.concatenate([kg, inverse, interact, interacted_by]).astype(np.int64),
        n_entities=dataset.n_entities,
        n_users=dataset.n_users,
        n_items=dataset.n_items,
        n_kg_relations=n_rel,
        relation_names=tuple(names),
    )
