"""KCAN's target-independent half (docs/ARCHITECTURE.md §3, steps 2-3): knowledge-aware attention, propagation,
distillation.

Everything is edge-wise over the whole CKG (DGL ``apply_edges`` / ``edge_softmax`` / ``update_all`` and per-edge
sorts): time and memory are linear in the number of edges; no N×N tensor is ever formed. :func:`relation_cosine`,
:func:`knowledge_attention` and :meth:`KAGCN.layer` take either the whole graph or a DGL block (a sampled bipartite
layer whose destination nodes are the first rows of its source nodes, ``x`` being the source nodes' rows), so the
sampled mini-batch path (:mod:`training.models.kcan_sampling`) runs the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from serving.scoring.kcan import NEGATIVE_SLOPE
from training.dgl_compat import dgl, edge_softmax, fn


def relation_cosine(
    graph: dgl.DGLGraph, x: Tensor, normals: Tensor, translations: Tensor, x_dst: Tensor | None = None
) -> Tensor:
    """s_ij = cos(P_r(x_i), P_r(x_j) + d_r) for every edge j →r i; shape (E,). On a block, ``x_dst`` may pass the
    destinations' rows (``x``'s first rows) as a view the caller shares (:func:`leading_rows`).

    Expanded into dot products so no (E, d) tensor is materialised besides DGL's fused x_i·x_j: with a = P_r(x_i),
    b = P_r(x_j) + d_r and unit w_r, a·b = x_i·x_j - (w·x_i)(w·x_j) + d·x_i - (w·x_i)(w·d), ‖a‖² = ‖x_i‖² - (w·x_i)²,
    ‖b‖² = ‖x_j‖² - (w·x_j)² + 2(d·x_j - (w·x_j)(w·d)) + ‖d‖². The (node, relation) products come from two (N, R)
    matrices, linear in nodes.
    """
    w = F.normalize(normals, dim=-1)
    rel = graph.edata["rel"]
    src, dst = graph.edges()
    wx, dx = x @ w.T, x @ translations.T
    wd, dd = (w * translations).sum(dim=-1)[rel], (translations * translations).sum(dim=-1)[rel]
    norms = (x * x).sum(dim=-1)
    wx_i, wx_j, dx_i, dx_j = wx[dst, rel], wx[src, rel], dx[dst, rel], dx[src, rel]
    with graph.local_scope():
        graph.srcdata["x"] = x
        # a block's destinations lead its sources; a graph: all of x
        graph.dstdata["x"] = x[: graph.num_dst_nodes()] if x_dst is None else x_dst
        graph.apply_edges(fn.u_dot_v("x", "x", "xx"))
        dot = graph.edata["xx"].squeeze(-1) - wx_i * wx_j + dx_i - wx_i * wd
    a2 = (norms[dst] - wx_i * wx_i).clamp_min(0.0)
    b2 = (norms[src] - wx_j * wx_j + 2.0 * (dx_j - wx_j * wd) + dd).clamp_min(0.0)
    return dot / (a2 * b2).clamp_min(1e-16).sqrt()


def knowledge_attention(
    graph: dgl.DGLGraph,
    x: Tensor,
    normals: Tensor,
    translations: Tensor,
    temperature: float | Tensor,
    enabled: bool = True,
    dropped: Tensor | None = None,
    relation_prior: Tensor | None = None,
    x_dst: Tensor | None = None,
) -> Tensor:
    """α per edge j →r i: softmax over i's in-edges of s_ij / τ (+ b_r) (:func:`relation_cosine`); shape (E,).

    ``normals``/``translations`` are TransH's (n_relations, d) tables (normals re-normalised here, so the projection
    is exact between optimiser steps). ``relation_prior`` (n_relations,) adds a learned logit per relation: TransH
    fits every edge of the graph, so the plausibility of true edges alone barely tells them apart, and the prior lets
    the recommendation loss prefer some relations (e.g. a fund's manager over its risk level). With ``enabled`` False
    every in-edge of i gets 1 / in-degree(i). Edges in the bool mask ``dropped`` (E,) get α = 0 and the others of
    their node are renormalised (a node left with no edge gets none): used to hide a batch's target edges from
    propagation.
    """
    if enabled:
        scores = relation_cosine(graph, x, normals, translations, x_dst) / temperature
        if relation_prior is not None:
            scores = scores + relation_prior[graph.edata["rel"]]
    else:
        scores = torch.zeros(graph.num_edges(), device=x.device)
    if dropped is None:
        return edge_softmax(graph, scores)
    return edge_softmax(graph, scores.masked_fill(dropped, -1e4)) * ~dropped


def leading_rows(x: Tensor, sizes: list[int]) -> dict[int, Tensor]:
    """Views of the first n rows of ``x`` for each n in ``sizes``, each cut from the next larger one (n = len(x): x
    itself).

    Why: the backward of ``x[:n]`` builds a zero gradient of x's whole shape. Blocks slice one source table several
    times (each block's destinations lead its sources, and are the next block's sources); cutting every size once,
    from the next larger view, fills each size once instead of x's size at every use.
    """
    views: dict[int, Tensor] = {}
    current = x
    for n in sorted(set(sizes), reverse=True):
        current = current if n == len(current) else current[:n]
        views[n] = current
    return views


class KAGCN(nn.Module):
    """Knowledge-aware propagation: x_i' = LeakyReLU(W_l Σ_j α_ij x_j + x_i), one call of :meth:`layer` per layer, so
    the caller decides whether α is shared by the layers or recomputed from each layer's input."""

    def __init__(self, dim: int, n_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(n_layers))

    def layer(
        self,
        index: int,
        graph: dgl.DGLGraph,
        x: Tensor,
        alpha: Tensor,
        dropout: float = 0.0,
        x_dst: Tensor | None = None,
    ) -> Tensor:
        """Representations of the destination nodes after layer ``index`` ((N, d) on the whole graph, (dst, d) on a
        block); ``dropout`` applies to the messages' source features; ``x_dst`` as in :func:`relation_cosine`."""
        with graph.local_scope():
            graph.edata["a"] = alpha.unsqueeze(-1)
            graph.srcdata["x"] = F.dropout(x, dropout, self.training) if dropout > 0 else x
            graph.update_all(fn.u_mul_e("x", "a", "m"), fn.sum("m", "agg"))
            residual = x[: graph.num_dst_nodes()] if x_dst is None else x_dst
            return F.leaky_relu(self.layers[index](graph.dstdata["agg"]) + residual, NEGATIVE_SLOPE)


@dataclass(frozen=True)
class Neighbourhoods:
    """Per-node top-k in-neighbours by α, padded: ``node`` (N, k) source ids (-1 = padding), ``edge`` (N, k) edge
    ids."""

    node: Tensor
    edge: Tensor

    def alpha(self, alpha: Tensor, nodes: Tensor) -> Tensor:
        """α of the kept edges of ``nodes`` (B,), 0 for padding; differentiable in ``alpha``; shape (B, k)."""
        edge = self.edge[nodes]
        return torch.where(edge >= 0, alpha[edge.clamp_min(0)], torch.zeros((), dtype=alpha.dtype))

    def repr(self, x: Tensor, nodes: Tensor) -> Tensor:
        """Representations of the kept neighbours of ``nodes`` (B,), zeros for padding; shape (B, k, d)."""
        node = self.node[nodes]
        return x[node.clamp_min(0)] * (node >= 0).unsqueeze(-1)


@torch.no_grad()
def distill(src: Tensor, dst: Tensor, alpha: Tensor, n_nodes: int, k: int, tie_break: Tensor) -> Neighbourhoods:
    """Top-k in-neighbours of every node by α, vectorised: sort edges by (dst, -α, tie_break), keep the first k per dst.

    ``tie_break`` (E,) is a fixed permutation rank so equal α (e.g. uniform attention) keeps a seeded random subset
    rather than the lowest edge ids.
    """
    order = torch.argsort(tie_break)
    order = order[torch.argsort(-alpha[order], stable=True)]
    order = order[torch.argsort(dst[order], stable=True)]
    sorted_dst = dst[order]
    degree = torch.bincount(dst, minlength=n_nodes)
    starts = torch.cumsum(degree, 0) - degree
    rank = torch.arange(len(order), device=dst.device) - starts[sorted_dst]
    keep = rank < k
    node = torch.full((n_nodes, k), -1, dtype=torch.long, device=dst.device)
    edge = torch.full((n_nodes, k), -1, dtype=torch.long, device=dst.device)
    node[sorted_dst[keep], rank[keep]] = src[order[keep]]
    edge[sorted_dst[keep], rank[keep]] = order[keep]
    return Neighbourhoods(node=node, edge=edge)
