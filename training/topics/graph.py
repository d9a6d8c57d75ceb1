"""The graph the topic encoder passes messages over: users and items, friendships both ways, and training
positives user -> item and item -> user (DGL, through the shim)."""

from __future__ import annotations

import pandas as pd
import torch

from training.data.dataset import Dataset
from training.dgl_compat import dgl

FRIEND = ("user", "friend", "user")
CONSUMES = ("user", "consumes", "item")
CONSUMED_BY = ("item", "consumed_by", "user")


def intent_graph(dataset: Dataset, positives: pd.DataFrame) -> dgl.DGLGraph:
    """A heterograph of all users and items: each undirected friendship as two edges, each training positive as a
    user -> item and an item -> user edge (duplicates dropped)."""
    pairs = positives[["user", "item"]].drop_duplicates()
    users = torch.as_tensor(pairs["user"].to_numpy(), dtype=torch.int64)
    items = torch.as_tensor(pairs["item"].to_numpy(), dtype=torch.int64)
    low = torch.as_tensor(dataset.social["user"].to_numpy(), dtype=torch.int64)
    high = torch.as_tensor(dataset.social["friend"].to_numpy(), dtype=torch.int64)
    return dgl.heterograph(
        {
            FRIEND: (torch.cat([low, high]), torch.cat([high, low])),
            CONSUMES: (users, items),
            CONSUMED_BY: (items, users),
        },
        num_nodes_dict={"user": dataset.n_users, "item": dataset.n_items},
    )
