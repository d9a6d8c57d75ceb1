"""KCAN's sampled mini-batch propagation (``KCANConfig.propagation = "sampled"``, docs/ARCHITECTURE.md §3): the
blocks a training step needs instead of the whole CKG, and the batch-local result the stars are read from.

A step scores pairs whose *seed* nodes are the batch's users and items. Their stars need, per seed, α over **all** its
in-edges (top-k distillation ranks a node's whole neighbourhood), so the star hop is a full-neighbourhood block
(:func:`star_block`) unless ``star_fanout`` caps it (then top-k is taken among a uniform sample of the in-edges: a
popular item's neighbourhood is most of the users, and grows with them). The representations z of the seeds and of their
kept neighbours come from ``n_layers`` blocks drawn by DGL's :class:`~dgl.dataloading.NeighborSampler` with the
configured fanouts (:func:`propagation_blocks`), over which α is an edge softmax over the *sampled* in-edges. Block
building is DGL's (sampling, relabelling and ``to_block`` compaction); nothing here walks the graph by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from serving.scoring.kcan import Star
from training.dgl_compat import dgl


def star_block(graph: dgl.DGLGraph, seeds: Tensor, fanout: int = -1) -> dgl.DGLGraph:
    """The in-edges of ``seeds`` (sorted unique node ids) as one block, all of them (``fanout`` -1) or at most
    ``fanout`` uniformly drawn per seed (DGL's RNG); its destination nodes are ``seeds``, its ``edata[dgl.EID]`` the
    edges' ids in ``graph``."""
    frontier = dgl.sampling.sample_neighbors(graph, seeds, fanout)
    block = dgl.to_block(frontier, seeds)
    block.edata[dgl.EID] = frontier.edata[dgl.EID]  # to_block numbers edges within the frontier; as NeighborSampler
    return block


def propagation_blocks(graph: dgl.DGLGraph, nodes: Tensor, fanouts: list[int]) -> list[dgl.DGLGraph]:
    """Blocks of a ``len(fanouts)``-layer propagation ending at ``nodes``: layer l keeps at most ``fanouts[l]``
    uniformly drawn in-edges per destination (-1: all of them), drawn by DGL's RNG (``dgl.seed``)."""
    _, _, blocks = dgl.dataloading.NeighborSampler(fanouts).sample_blocks(graph, nodes)
    return blocks


def block_edges(mask: Tensor | None, block: dgl.DGLGraph) -> Tensor | None:
    """A bool mask over ``graph``'s edges (E,) restricted to ``block``'s edges, in block order."""
    return None if mask is None else mask[block.edata[dgl.EID]]


@dataclass(frozen=True)
class SampledPropagation:
    """Steps 1-3 for one batch: representations z of ``nodes`` (sorted ids: the seeds and their kept neighbours),
    and the distilled star of every seed (``seeds`` sorted; ``nbr_node`` (S, k) node ids, -1 = padding;
    ``nbr_alpha`` (S, k) their α, 0 for padding)."""

    nodes: Tensor
    z: Tensor
    seeds: Tensor
    nbr_node: Tensor
    nbr_alpha: Tensor

    def star(self, nodes: Tensor, bias: Tensor | None = None) -> Star:
        """The stars of ``nodes`` (B,), which must all be seeds of this propagation."""
        position = torch.searchsorted(self.seeds, nodes).clamp_max(len(self.seeds) - 1)
        if not torch.equal(self.seeds[position], nodes):
            raise ValueError("a sampled propagation only holds the stars of the nodes it was built for")
        nbr_node = self.nbr_node[position]
        kept = nbr_node >= 0
        nbr_row = torch.searchsorted(self.nodes, nbr_node.clamp_min(0))
        return Star(
            node_id=nodes,
            centre=self.z[torch.searchsorted(self.nodes, nodes)],
            nbr_id=nbr_node,
            nbr_repr=self.z[nbr_row] * kept.unsqueeze(-1),
            nbr_alpha=self.nbr_alpha[position],
            bias=bias,
        )
