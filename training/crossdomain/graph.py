"""User–item graphs of a cross-domain task and the propagation encoder that runs over them (DGL ``update_all``).

A graph is homogeneous with users 0..n_users-1 first, then items; every training row is an edge in both directions,
weighted 1/sqrt(deg(u)·deg(i)) as in LightGCN. A user without training rows in a graph is an isolated node: its output
is only its own (layer-0) embedding.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.crossdomain.task import CrossDomainTask
from training.dgl_compat import dgl, fn

INIT_STD = 0.1


def bipartite_graph(n_users: int, n_items: int, rows: np.ndarray) -> dgl.DGLGraph:
    """Users then items as nodes, each (user, item) row an edge both ways with the symmetric normalisation in 'w'."""
    users, items = torch.as_tensor(rows[:, 0]), torch.as_tensor(rows[:, 1]) + n_users
    graph = dgl.graph((torch.cat([users, items]), torch.cat([items, users])), num_nodes=n_users + n_items)
    degree = graph.in_degrees().float().clamp_min(1.0)
    source, target = graph.edges()
    graph.edata["w"] = (degree[source] * degree[target]).rsqrt().unsqueeze(1)
    return graph


def domain_graph(task: CrossDomainTask, domain: int) -> dgl.DGLGraph:
    """One domain's training rows: all users, that domain's items."""
    return bipartite_graph(task.n_users, task.n_items[domain], task.train[domain])


def merged_graph(task: CrossDomainTask) -> dgl.DGLGraph:
    """Both domains' training rows in one graph: all users, domain 0's items, then domain 1's items."""
    second = task.train[1] + np.array([0, task.n_items[0]])
    return bipartite_graph(task.n_users, sum(task.n_items), np.concatenate([task.train[0], second]))


class GraphEncoder(nn.Module):
    """Node embeddings propagated ``layers`` times over one graph; the output is the mean of every layer's output.

    With ``transforms`` each layer is followed by its own linear map (a GCN layer without non-linearity, started at the
    identity so training begins as LightGCN); without, the encoder is LightGCN. Two encoders never share weights.
    """

    def __init__(self, graph: dgl.DGLGraph, dim: int, layers: int, transforms: bool) -> None:
        super().__init__()
        self.graph = graph
        self.embedding = nn.Embedding(graph.num_nodes(), dim)
        nn.init.normal_(self.embedding.weight, std=INIT_STD)
        self.linears = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(layers if transforms else 0))
        for linear in self.linears:
            nn.init.eye_(linear.weight)
        self.layers = layers

    def forward(self) -> torch.Tensor:
        """(num_nodes, dim) representations."""
        hidden = self.embedding.weight
        outputs = [hidden]
        with self.graph.local_scope():
            for layer in range(self.layers):
                self.graph.ndata["h"] = hidden
                self.graph.update_all(fn.u_mul_e("h", "w", "m"), fn.sum("m", "h"))
                hidden = self.graph.ndata["h"]
                if self.linears:
                    hidden = self.linears[layer](hidden)
                outputs.append(hidden)
        return torch.stack(outputs).mean(0)
