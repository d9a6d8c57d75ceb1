"""The typed heterograph: user-item edges both ways, KG edges with relation ids (and inverses), friendships.

Node types ``user`` and ``entity`` (items are entities ``0..n_items-1``). Edge types:
``(user, interacts, entity)`` and ``(entity, interacted_by, user)`` from training positives only;
``(entity, kg, entity)`` with ``edata['rel']`` (KG relation ids, inverses offset by n_relations);
``(user, friend, user)`` with each friendship in both directions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from training.data.dataset import Dataset
from training.dgl_compat import dgl

USER, ENTITY = "user", "entity"
INTERACTS = (USER, "interacts", ENTITY)
INTERACTED_BY = (ENTITY, "interacted_by", USER)
KG_EDGE = (ENTITY, "kg", ENTITY)
FRIEND = (USER, "friend", USER)


def _tensor(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.int64))


def build_hetero_graph(dataset: Dataset, train_positives: pd.DataFrame) -> dgl.DGLGraph:
    """The heterograph of ``dataset``, with interaction edges from ``train_positives`` only."""
    pairs = train_positives[["user", "item"]].drop_duplicates().to_numpy(dtype=np.int64)
    kg = dataset.kg[["head", "relation", "tail"]].to_numpy(dtype=np.int64)
    social = dataset.social[["user", "friend"]].to_numpy(dtype=np.int64)
    kg_src = np.concatenate([kg[:, 0], kg[:, 2]])
    kg_dst = np.concatenate([kg[:, 2], kg[:, 0]])
    kg_rel = np.concatenate([kg[:, 1], kg[:, 1] + dataset.n_relations])
    graph = dgl.heterograph(
        {
            INTERACTS: (_tensor(pairs[:, 0]), _tensor(pairs[:, 1])),
            INTERACTED_BY: (_tensor(pairs[:, 1]), _tensor(pairs[:, 0])),
            KG_EDGE: (_tensor(kg_src), _tensor(kg_dst)),
            FRIEND: (
                _tensor(np.concatenate([social[:, 0], social[:, 1]])),
                _tensor(np.concatenate([social[:, 1], social[:, 0]])),
            ),
        },
        num_nodes_dict={USER: dataset.n_users, ENTITY: dataset.n_entities},
    )
    graph.edges[KG_EDGE].data["rel"] = _tensor(kg_rel)
    return graph
