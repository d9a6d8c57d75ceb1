"""KCAN (Tu et al., "Conditional Graph Attention Networks for Distilling and Refining Knowledge Graphs in
Recommendation", CIKM 2021), following the formulation of docs/ARCHITECTURE.md §3.

1. The shared TransH layer (:mod:`training.kge`) embeds every CKG node; its margin loss with Bernoulli negatives on a
   random batch of CKG triples is added to every step: L = L_rec + λ·L_TransH (joint training).
2. Knowledge-aware attention α and propagation (KAGCN) over the whole CKG, recomputed at every step with gradients
   (it costs a few milliseconds on Last.FM, and lets the recommendation loss shape TransH and α).
3. Distillation: per node, the top-k in-neighbours by α; for a scored pair (u, v) the u–v edge is masked out of both
   stars, in training, prediction and serving alike.
4-5. Conditional attention and two towers: :func:`serving.scoring.kcan.kcan_logits`, the code the served scorer runs.

Ablations: ``knowledge_attention`` off → uniform α (and top-k a seeded random subset); ``conditional_attention`` off →
the distilled star is aggregated with α alone (no target-conditioned β); ``distillation`` off → every neighbour up to
``max_neighbours``. L2 is Adam's ``weight_decay`` (with ``sparse_embeddings``, on each step's rows of the node tables).

With ``hide_target_edges`` (training only), a batch's own u–v edges also carry no message in that step's propagation,
so a training positive is scored as a validation pair is — without its edge — instead of the towers learning to
detect an edge that held-out pairs never have. Prediction and serving use the full training graph.

Switches that let each stage matter (issue 11; every one off reproduces the first implementation):
``loss="bpr"`` trains on positives against uniformly sampled items, as the baselines do (shared
:func:`training.models.bpr_mf.recommendation_loss`); ``alpha_per_layer`` recomputes α from each layer's input instead
of sharing the first layer's, ``learn_temperature`` makes τ a parameter, and ``relation_prior`` adds a learned α logit
per relation (TransH fits every edge, so plausibility alone cannot tell true edges apart); ``attention="gatv2"`` makes
the conditional attention depend on the pair (:func:`serving.scoring.kcan.conditional_attention`), and
``attention="bilinear"`` matches a query from the pair against each neighbour (started as "neighbours like the target
weigh most");
``personal_embeddings`` adds a free embedding per node after propagation (CKE's η_i + v_i: an MF-strength personal
channel); ``item_bias`` gives popularity a per-item logit offset instead of the towers; ``centre_dot`` adds
⟨x_u, x_v⟩ of the two centres to the logit, a residual path around the towers, so the model can be at least the MF
that its centres already are; ``transh_schedule="alternating"`` takes a recommendation step and then a separate TransH
step whose triples leave out the batch's own positives (the paper's alternating optimisation).

Sampled mini-batch training (issue 16), ``propagation="sampled"``: a training step computes steps 1-3 only for the nodes
its batch needs, through DGL blocks (:mod:`training.models.kcan_sampling`), instead of over the whole CKG. The seeds are
the batch's users and items. (a) By default the star hop is exact: each seed's α is the edge softmax over *all* its
in-edges, computed from the TransH embeddings (the α the layers share; no propagation is needed for it), and its top-k
is distilled from that, exactly as the full graph does. A popular item's in-edges are most of its users, so
``star_fanout`` can cap them: top-k then among a uniform sample of that many in-edges, α renormalised over it. (b) The
representations z of the seeds and of their kept neighbours come from ``n_layers`` blocks sampled by DGL's
``NeighborSampler`` with ``fanouts`` (one per layer, -1 = every in-neighbour); in those layers α is the edge softmax
over the *sampled* in-edges (the renormalised estimate GraphSAGE-style sampling makes). With every fanout -1 a sampled
step equals the full-graph step (tested). Because (a) needs α before any propagation, ``alpha_per_layer`` is refused in
sampled mode. With ``loss="bpr"`` the positives and the sampled negatives are propagated separately (two sampled
propagations per step). Validation, prediction, diagnostics and the serving export always propagate over the whole
graph, so the serving form is unchanged. ``propagation="full"`` (the default) stays: on small graphs one whole-graph
pass is faster than building blocks. ``sparse_embeddings`` (sampled mode only) removes a step's work proportional to
the number of nodes (save TransH's norm-constraint scan, one read of the entity table): the node tables (TransH
entities, and the personal embeddings and item biases when on) get sparse row gradients and are stepped by lazy
Adam (:class:`training.models.optimizers.SparseRowsAdam`: only the rows a step touched and their moments move; L2
``weight_decay`` on those rows), the other parameters by Adam as before. The model's maths is the same; the
optimiser differs from dense Adam, whose momentum and weight decay also move rows a step did not touch. Measured
(BENCHMARKS.md), it does not pay yet at 10⁵-10⁶ users: a step touches most rows, and lazy Adam is slow per row; what
a 10⁶ step costs is its sampled blocks and star hop (``fanouts``, ``star_fanout``).

Extension ``user_intent`` (issue 12): each user's intent mixture θ_u from the social + tag topic model
(:attr:`TrainingData.user_intent`) enters as a side feature, a learned projection Wθ_u added to the user's node
representation after propagation, so it reaches the user's star centre and every item star the user sits in. The
export bakes it into the per-user and per-item features; the scorer and the service are unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Self

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from serving.scoring.kcan import (
    HeadWeights,
    Star,
    conditional_attention,
    kcan_logits,
    refined_pair,
    tower_outputs,
)
from training.dgl_compat import dgl
from training.kge.sampling import BernoulliSampler
from training.kge.transh import TransH
from training.models.base import (
    Batch,
    ModelConfig,
    Recommender,
    ServingExport,
    TrainingData,
    intent_projection,
    register_model,
)
from training.models.bpr_mf import LossKind, recommendation_loss
from training.models.kcan_layers import KAGCN, Neighbourhoods, distill, knowledge_attention, leading_rows
from training.models.kcan_sampling import SampledPropagation, block_edges, propagation_blocks, star_block
from training.models.optimizers import SparseRowsAdam

CONDITIONING_USERS, CONDITIONING_TARGETS = 64, 16  # the sample that measures how much the target changes r_u
UNMASKED_TARGET = -2  # a node id no neighbour has (padding is -1)
LOGIT_PAIRS = 4096  # random pairs whose logit is split into its parts and whose β entropy is measured
# Pairs × star size scored at once: the conditional attention's tensors are (pairs, star, dim), so undistilled stars
# (max_neighbours 128) in the trainer's 65,536-pair prediction chunks peaked at 10.7 GiB RSS on the cold synthetic set,
# 1.8 GiB with this bound (same logits). Distilled stars (k ≤ 16) keep 65,536-pair chunks.
PREDICT_STAR_SLOTS = 1 << 20


class KCANConfig(ModelConfig):
    """KCAN hyper-parameters (defaults chosen on the Last.FM validation split)."""

    n_layers: int = 2
    top_k: int = 16
    max_neighbours: int = 128  # star size when distillation is off
    temperature: float = 0.5  # τ of the knowledge-aware softmax
    gamma: float = 0.5  # share of the conditional attention β in the mixed weights γβ + (1-γ)α
    transh_weight: float = 3.0  # λ
    transh_batch_size: int = 1024
    transh_margin: float = 1.0
    dropout: float = 0.3  # tower inputs
    message_dropout: float = 0.0  # KAGCN messages
    knowledge_attention: bool = True
    conditional_attention: bool = True
    distillation: bool = True
    hide_target_edges: bool = True  # training: a batch's own u–v edges are left out of that step's propagation
    loss: LossKind = "bce"  # "bce": the labelled rows; "bpr": positives against uniformly sampled items
    alpha_per_layer: bool = False  # α recomputed from each layer's input (else the first layer's α is shared)
    learn_temperature: bool = False  # τ a parameter (initialised at ``temperature``)
    relation_prior: bool = False  # a learned α logit per relation, added to the TransH plausibility
    # conditional attention: the paper's static form, pair-dependent GATv2, or a bilinear query-key match
    attention: Literal["gat", "gatv2", "bilinear"] = "gat"
    personal_embeddings: bool = False  # a free embedding per node added after propagation
    item_bias: bool = False  # a per-item logit offset
    centre_dot: bool = False  # add ⟨x_u, x_v⟩ of the star centres to the logit, around the towers
    # "joint": L_rec + λ·L_TransH in one step; "alternating" (the paper's schedule): a recommendation step, then a
    # TransH step on triples other than the batch's own positives
    transh_schedule: Literal["joint", "alternating"] = "joint"
    user_intent: bool = False  # θ_u of the intent topic model as a user side feature (projected, added to z_u)
    # training steps: "full" propagates over the whole CKG; "sampled" only for the batch's nodes, through DGL blocks
    # with ``fanouts`` in-edges per node and layer (-1: all); evaluation and export are always full-graph
    propagation: Literal["full", "sampled"] = "full"
    fanouts: list[int] = Field(default_factory=lambda: [10, 10])
    star_fanout: int = -1  # sampled: in-edges a batch node's star is distilled from (-1: all, the exact star)
    # sampled: node tables with sparse row gradients, stepped by lazy Adam (L2 on a step's rows), so a step costs
    # O(its rows), not O(nodes); off: one dense Adam over everything (the full graph touches every row anyway)
    sparse_embeddings: bool = False
    lr: float = 5e-3
    weight_decay: float = 1e-4
    batch_size: int = 2048

    @model_validator(mode="after")
    def _sampling_is_consistent(self) -> Self:
        """Sampled propagation needs one fanout per layer and the star's α before propagation."""
        if self.propagation == "sampled":
            if len(self.fanouts) != self.n_layers:
                raise ValueError(f"fanouts {self.fanouts} must give one fanout per layer (n_layers={self.n_layers})")
            if any(f == 0 or f < -1 for f in self.fanouts):
                raise ValueError(f"fanouts {self.fanouts}: each must be a positive count or -1 (every in-neighbour)")
            if self.star_fanout == 0 or self.star_fanout < -1:
                raise ValueError(f"star_fanout {self.star_fanout} must be a positive count or -1 (every in-neighbour)")
            if self.alpha_per_layer:
                raise ValueError("propagation='sampled' needs alpha_per_layer=false (the stars' α comes first)")
        elif self.sparse_embeddings:
            raise ValueError("sparse_embeddings needs propagation='sampled' (a full-graph step touches every row)")
        return self


@torch.no_grad()
def _match_target(weight: Tensor, dim: int) -> None:
    """Start the bilinear attention's W = [W_u‖W_v‖W_c‖W_n] (d, 4d) as query h_v, key x_j (W_v = W_n = I, small
    noise elsewhere): at the first step a user's neighbours are already weighted by their match with the target item,
    which training then reshapes, instead of the near-uniform β a small random W starts from (GATv2's, measured to
    stay target-blind on the KG-driven set: sensitivity 2e-11, issue 11)."""
    nn.init.normal_(weight, std=0.01)
    eye = torch.eye(dim)
    weight[:, dim : 2 * dim] += eye
    weight[:, 3 * dim :] += eye


def _tower(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(2 * dim, dim), nn.Linear(dim, dim))


def _layers(module: nn.Sequential) -> list[tuple[Tensor, Tensor]]:
    return [(layer.weight, layer.bias) for layer in module if isinstance(layer, nn.Linear)]


@dataclass(frozen=True)
class Propagation:
    """Steps 1-3 of one forward pass: representations z (N, d), α per layer (each (E,)), the stars' α (the last
    layer's) and the distilled neighbourhoods."""

    z: Tensor
    alphas: list[Tensor]
    neighbourhoods: Neighbourhoods

    @property
    def alpha(self) -> Tensor:
        """The α the stars carry: the last layer's."""
        return self.alphas[-1]

    def star(self, nodes: Tensor, bias: Tensor | None = None) -> Star:
        """The distilled stars of CKG ``nodes`` (B,)."""
        return Star(
            node_id=nodes,
            centre=self.z[nodes],
            nbr_id=self.neighbourhoods.node[nodes],
            nbr_repr=self.neighbourhoods.repr(self.z, nodes),
            nbr_alpha=self.neighbourhoods.alpha(self.alpha, nodes),
            bias=bias,
        )


@register_model
class KCAN(Recommender):
    """Knowledge-aware attention over the CKG, top-k distillation, conditional attention and two towers."""

    name = "kcan"
    Config = KCANConfig
    ablations = {  # the paper's three ablations (Tu et al., §4.4)
        "no knowledge attention": {"knowledge_attention": False},
        "no distillation": {"distillation": False},
        "no conditional attention": {"conditional_attention": False},
    }
    extensions = {"intent topics": {"user_intent": True}}
    config: KCANConfig
    triples: Tensor  # (T, 3) CKG triples, the TransH training set
    tie_break: Tensor  # (E,) fixed random ranks: top-k among equal α
    edge_order: Tensor  # (E,) edge ids sorted by src·N + dst
    edge_keys: Tensor  # (E,) the sorted src·N + dst keys

    def __init__(self, config: KCANConfig, data: TrainingData):
        super().__init__(config, data)
        ckg = data.ckg
        self.n_entities, self.n_users, self.n_items = ckg.n_entities, ckg.n_users, ckg.n_items
        self.graph = ckg.to_dgl()
        self.register_buffer("triples", torch.from_numpy(ckg.triples), persistent=False)
        self.register_buffer("tie_break", torch.randperm(self.graph.num_edges()))
        src, dst = self.graph.edges()
        keys = src * self.graph.num_nodes() + dst
        self.register_buffer("edge_order", torch.argsort(keys), persistent=False)
        self.register_buffer("edge_keys", keys[self.edge_order], persistent=False)
        self.transh = TransH(ckg.n_nodes, ckg.n_relations, config.dim, margin=config.transh_margin)
        self.sampler = BernoulliSampler(ckg.triples, ckg.n_nodes, ckg.n_relations, seed=torch.initial_seed() % 2**63)
        self.kagcn = KAGCN(config.dim, config.n_layers)
        dim = config.dim
        if config.attention == "gatv2":
            self.attention_transform = nn.Linear(4 * dim, dim, bias=False)
            self.attention = nn.Parameter(torch.randn(dim) / dim**0.5)
        elif config.attention == "bilinear":
            self.attention_transform = nn.Linear(4 * dim, dim, bias=False)
            _match_target(self.attention_transform.weight, dim)
            self.attention = nn.Parameter(torch.ones(1))  # the logit scale s
        else:
            self.attention_transform = None
            self.attention = nn.Parameter(torch.randn(4 * dim) / (4 * dim) ** 0.5)
        self.refine = nn.Linear(dim, dim, bias=False)
        self.user_tower, self.item_tower = _tower(dim), _tower(dim)
        self.bias = nn.Parameter(torch.zeros(()))
        log_temperature = torch.tensor(math.log(config.temperature))
        self.log_temperature = nn.Parameter(log_temperature, requires_grad=config.learn_temperature)
        self.relation_prior = nn.Parameter(torch.zeros(ckg.n_relations)) if config.relation_prior else None
        self.personal = nn.Embedding(ckg.n_nodes, dim) if config.personal_embeddings else None
        if self.personal is not None:
            nn.init.normal_(self.personal.weight, std=0.1)
        self.item_bias = nn.Embedding(self.n_items, 1) if config.item_bias else None
        if self.item_bias is not None:
            nn.init.zeros_(self.item_bias.weight)
        self.intent_projection = intent_projection(data, dim) if config.user_intent else None
        if self.intent_projection is not None:
            self.register_buffer("intent", torch.from_numpy(data.user_intent), persistent=False)
        for table in self.node_tables():
            table.sparse = config.sparse_embeddings
        self._frozen = None  # the propagation reused by eval-mode predictions (see predict_logits)

    def node_tables(self) -> list[nn.Embedding]:
        """The tables with a row per node or item (TransH entities, personal embeddings, item biases): the parameters
        that grow with the data, and that ``sparse_embeddings`` steps row by row."""
        return [t for t in (self.transh.entity, self.personal, self.item_bias) if t is not None]

    def generator_states(self) -> dict[str, Tensor]:
        """The knowledge-graph negative sampler's generator (resumable fits save it)."""
        return {"kg_negatives": self.sampler.generator.get_state()}

    def restore_generators(self, states: dict[str, Tensor]) -> None:
        """Set the knowledge-graph negative sampler's generator."""
        self.sampler.generator.set_state(states["kg_negatives"])

    def make_optimizer(self) -> torch.optim.Optimizer | SparseRowsAdam:
        """Adam over every parameter, or with ``sparse_embeddings`` lazy Adam over the node tables' touched rows
        (L2 on those rows) beside Adam over the rest."""
        if not self.config.sparse_embeddings:
            return super().make_optimizer()
        sparse = [table.weight for table in self.node_tables()]
        dense = [p for p in self.parameters() if all(p is not s for s in sparse)]
        return SparseRowsAdam(dense, sparse, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def knowledge_alpha(
        self, x: Tensor, dropped: Tensor | None, graph: dgl.DGLGraph | None = None, x_dst: Tensor | None = None
    ) -> Tensor:
        """α per edge of ``graph`` (default: the whole CKG; or a block, ``x`` then its source rows and ``x_dst``
        optionally a shared view of its destinations' rows) from representations ``x`` under TransH's relation
        hyperplanes, at the current temperature."""
        return knowledge_attention(
            self.graph if graph is None else graph,
            x,
            self.transh.normal.weight,
            self.transh.translation.weight,
            self.log_temperature.exp(),
            self.config.knowledge_attention,
            dropped,
            self.relation_prior,
            x_dst,
        )

    def propagate(self, dropped: Tensor | None = None) -> Propagation:
        """Steps 1-3 over the whole CKG: α (per layer, or the first layer's shared), KAGCN representations (plus the
        personal embeddings), and the neighbourhoods distilled by the last layer's α.

        Edges in the bool mask ``dropped`` (E,) get α = 0 (they carry no message).
        """
        config = self.config
        x = self.transh.entity.weight
        alphas: list[Tensor] = []
        for layer in range(config.n_layers):
            alphas.append(self.knowledge_alpha(x, dropped) if layer == 0 or config.alpha_per_layer else alphas[-1])
            x = self.kagcn.layer(layer, self.graph, x, alphas[-1], config.message_dropout)
        if self.personal is not None:
            x = x + self.personal.weight
        if self.intent_projection is not None:
            x = torch.cat((x[: self.n_entities], x[self.n_entities :] + self.intent_projection(self.intent)))
        src, dst = self.graph.edges()
        neighbourhoods = distill(src, dst, alphas[-1], self.graph.num_nodes(), self.star_size, self.tie_break)
        return Propagation(z=x, alphas=alphas, neighbourhoods=neighbourhoods)

    def propagate_sampled(self, seeds: Tensor, dropped: Tensor | None = None) -> SampledPropagation:
        """Steps 1-3 for the CKG nodes ``seeds`` only (see the module docstring): their stars distilled from α over all
        their in-edges, then z of the seeds and their kept neighbours through blocks sampled with ``fanouts``.

        Edges in the bool mask ``dropped`` (E,) get α = 0, as in :meth:`propagate`.
        """
        seeds = torch.unique(seeds)
        x0 = self.transh.entity  # row lookups: sparse row gradients with ``sparse_embeddings``
        dgl.seed(int(torch.randint(0, 2**31 - 1, ())))  # the star's and the layers' samples follow torch's seed
        block = star_block(self.graph, seeds, self.config.star_fanout)
        star_alpha = self.knowledge_alpha(x0(block.srcdata[dgl.NID]), block_edges(dropped, block), block)
        src, dst = block.edges()
        local = distill(src, dst, star_alpha, len(seeds), self.star_size, self.tie_break[block.edata[dgl.EID]])
        nbr_node = torch.where(local.node >= 0, block.srcdata[dgl.NID][local.node.clamp_min(0)], -1)
        nodes = torch.unique(torch.cat((seeds, nbr_node[nbr_node >= 0])))
        blocks = propagation_blocks(self.graph, nodes, self.config.fanouts)
        # one lookup serves every layer: a block's sources are the previous block's destinations, which lead its
        # sources; each leading part is one shared view (its backward fills a zero gradient once, not at every use)
        x = rows = x0(blocks[0].srcdata[dgl.NID])
        lead = leading_rows(rows, [n for b in blocks for n in (b.num_src_nodes(), b.num_dst_nodes())])
        for layer, layer_block in enumerate(blocks):
            # the layers share the α of the TransH embeddings (alpha_per_layer is refused), over this block's edges
            src_rows, dst_rows = lead[layer_block.num_src_nodes()], lead[layer_block.num_dst_nodes()]
            alpha = self.knowledge_alpha(src_rows, block_edges(dropped, layer_block), layer_block, dst_rows)
            x = self.kagcn.layer(
                layer, layer_block, x, alpha, self.config.message_dropout, dst_rows if layer == 0 else None
            )
        if self.personal is not None:
            x = x + self.personal(nodes)
        if self.intent_projection is not None:
            users = nodes >= self.n_entities
            rows = torch.nonzero(users).squeeze(-1)
            x = x.index_add(0, rows, self.intent_projection(self.intent[nodes[users] - self.n_entities]))
        return SampledPropagation(
            nodes=nodes,
            z=x,
            seeds=seeds,
            nbr_node=nbr_node,
            nbr_alpha=local.alpha(star_alpha, torch.arange(len(seeds))),
        )

    def pair_edges(self, users: Tensor, items: Tensor) -> Tensor:
        """Bool mask (E,) of the CKG edges joining any (user, item) pair, both directions (training positives only)."""
        user_nodes, n_nodes = self.user_nodes(users), self.graph.num_nodes()
        queries = torch.cat((user_nodes * n_nodes + items, items * n_nodes + user_nodes))
        position = torch.searchsorted(self.edge_keys, queries).clamp_max(len(self.edge_keys) - 1)
        hit = self.edge_keys[position] == queries
        mask = torch.zeros(len(self.edge_keys), dtype=torch.bool)
        mask[self.edge_order[position[hit]]] = True
        return mask

    @property
    def star_size(self) -> int:
        """Neighbours kept per node: ``top_k`` when distilling, else ``max_neighbours``."""
        return self.config.top_k if self.config.distillation else self.config.max_neighbours

    def user_nodes(self, users: Tensor) -> Tensor:
        """CKG node ids of user indices."""
        return users + self.n_entities

    def head_weights(self) -> HeadWeights:
        """The parameters of steps 4-5 in the scorer's form."""
        return HeadWeights(
            attention=self.attention,
            refine=self.refine.weight,
            user_tower=_layers(self.user_tower),
            item_tower=_layers(self.item_tower),
            bias=self.bias,
            attention_transform=None if self.attention_transform is None else self.attention_transform.weight,
            centre_dot=self.config.centre_dot,
            bilinear=self.config.attention == "bilinear",
        )

    def user_star(self, propagation: Propagation | SampledPropagation, users: Tensor) -> Star:
        """The distilled stars of user indices ``users`` (B,), before the target edge is masked (the scorer masks
        it)."""
        return propagation.star(self.user_nodes(users))

    def item_star(self, propagation: Propagation | SampledPropagation, items: Tensor) -> Star:
        """The distilled stars of item indices ``items`` (B,), with the items' logit offsets when ``item_bias``."""
        bias = None if self.item_bias is None else self.item_bias(items).squeeze(-1)
        return propagation.star(items, bias)

    def _score(self, propagation: Propagation | SampledPropagation, users: Tensor, items: Tensor) -> Tensor:
        return kcan_logits(
            self.user_star(propagation, users),
            self.item_star(propagation, items),
            self.head_weights(),
            self.config.gamma,
            self.config.conditional_attention,
            self.config.dropout,
            self.training,
        )

    def training_loss(self, batch: Batch) -> Tensor | tuple[Callable[[], Tensor], ...]:
        """The recommendation loss (BCE on the labelled rows, or BPR against sampled items) + λ × TransH margin loss
        on a uniformly drawn batch of CKG triples; one propagation serves every pair of the step. Under the
        alternating schedule the two are separate steps, and the TransH step skips the batch's own positives."""
        self.transh.renormalize_()
        positive = batch.labels > 0
        batch_edges = self.pair_edges(batch.users[positive], batch.items[positive])
        if self.config.transh_schedule == "alternating":
            return (lambda: self.recommendation_loss(batch, batch_edges), lambda: self.transh_loss(batch_edges))
        return self.recommendation_loss(batch, batch_edges) + self.transh_loss(None)

    def recommendation_loss(self, batch: Batch, batch_edges: Tensor) -> Tensor:
        """BCE or BPR of the batch over one whole-graph propagation, or over a sampled one per scored set of pairs
        (without the batch's own u–v edges when ``hide_target_edges``)."""
        dropped = batch_edges if self.config.hide_target_edges else None
        return recommendation_loss(self.config.loss, self.step_scorer(dropped), batch, self.n_items)

    def step_scorer(self, dropped: Tensor | None) -> Callable[[Tensor, Tensor], Tensor]:
        """Training logits of aligned pairs with the edges ``dropped`` hidden: one whole-graph propagation shared by
        every call, or (``propagation="sampled"``) a sampled propagation for each call's own users and items."""
        if self.config.propagation == "sampled":
            return lambda users, items: self._score(
                self.propagate_sampled(torch.cat((self.user_nodes(users), items)), dropped), users, items
            )
        propagation = self.propagate(dropped)
        return lambda users, items: self._score(propagation, users, items)

    def transh_loss(self, excluded: Tensor | None) -> Tensor:
        """λ × TransH's margin loss on a uniform batch of CKG triples (an edge id is its triple's row), none of them
        an edge in the bool mask ``excluded``."""
        drawn = torch.randint(0, len(self.triples), (self.config.transh_batch_size,))
        if excluded is not None:
            drawn = drawn[~excluded[drawn]]
        positives = self.triples[drawn]
        return self.config.transh_weight * self.transh.loss(positives, self.sampler.sample(positives))

    def predict_logits(self, users: Tensor, items: Tensor) -> Tensor:
        """Logits of aligned pairs (the u–v edge masked out of both stars), scored in chunks of at most
        ``PREDICT_STAR_SLOTS`` star slots. In eval mode without gradients, one propagation serves every call until the
        model is put back in training mode (ranking the catalogue for every user would otherwise repeat the
        whole-graph propagation per batch)."""
        if self.training or torch.is_grad_enabled():
            propagation = self.propagate()
        else:
            if self._frozen is None:
                self._frozen = self.propagate()
            propagation = self._frozen
        chunk = max(1, PREDICT_STAR_SLOTS // self.star_size)
        if len(users) <= chunk:
            return self._score(propagation, users, items)
        return torch.cat(
            [self._score(propagation, users[s : s + chunk], items[s : s + chunk]) for s in range(0, len(users), chunk)]
        )

    def train(self, mode: bool = True) -> KCAN:
        """Switch mode (``eval()`` calls this too) and forget the propagation cached for prediction."""
        self._frozen: Propagation | None = None
        return super().train(mode)

    @torch.no_grad()
    def diagnostics(self, data: TrainingData) -> dict[str, float]:
        """Personalisation (the default) plus whether each knowledge stage selects: α entropy and max/uniform per
        layer, what distillation cuts, how much the target changes a user's refined representation, and which part
        of the logit (towers, centre dot, item bias) carries its variance."""
        from training.evaluation.diagnostics import (
            attention_summary,
            conditioning_sensitivity,
            distillation_summary,
            logit_shares,
        )

        propagation = self.propagate()
        _, dst = self.graph.edges()
        n_nodes = self.graph.num_nodes()
        found = super().diagnostics(data)
        found |= attention_summary(propagation.alphas, dst, n_nodes)
        found |= distillation_summary(propagation.alpha, dst, n_nodes, propagation.neighbourhoods.edge)
        found["conditioning/sensitivity"] = conditioning_sensitivity(self.refined_under_targets(propagation))
        user, item = self.sample_stars(propagation)
        if self.config.conditional_attention:
            found |= self.beta_entropies(user, item)
        shares = logit_shares(self.logit_parts(user, item))
        return found | {f"logit/{name}_share": share for name, share in shares.items()}

    def sample_stars(self, propagation: Propagation) -> tuple[Star, Star]:
        """The user and item stars of a seeded sample of random (user, item) pairs, the ones the logit and β
        diagnostics read."""
        generator = torch.Generator().manual_seed(0)
        users = torch.randint(0, self.n_users, (LOGIT_PAIRS,), generator=generator)
        items = torch.randint(0, self.n_items, (LOGIT_PAIRS,), generator=generator)
        return self.user_star(propagation, users), self.item_star(propagation, items)

    def logit_parts(self, user: Star, item: Star) -> dict[str, Tensor]:
        """The additive parts of the logit (towers' product + bias, centre dot, item bias; those switched on) of
        aligned stars, the target masked as in scoring."""
        head = self.head_weights()
        user_out, item_out = tower_outputs(user, item, head, self.config.gamma, self.config.conditional_attention)
        parts = {"towers": (user_out * item_out).sum(dim=-1) + head.bias}
        if head.centre_dot:
            parts["centre_dot"] = (user.centre * item.centre).sum(dim=-1)
        if item.bias is not None:
            parts["item_bias"] = item.bias
        return parts

    def beta_entropies(self, user: Star, item: Star) -> dict[str, float]:
        """Mean normalised entropy of the conditional attention β over aligned user and item stars (1 = uniform):
        whether β selects at all, which the target sensitivity does not say (a β that picks the same neighbours for
        every target selects, statically)."""
        from training.evaluation.diagnostics import weights_entropy

        head, found = self.head_weights(), {}
        for side, star, target in (("user", user, item.node_id), ("item", item, user.node_id)):
            kept = star.kept(target)
            beta = conditional_attention(
                star, user.centre, item.centre, head.attention, kept, head.attention_transform, head.bilinear
            )
            found[f"conditioning/beta_entropy_{side}"] = weights_entropy(beta, kept)
        return found

    def refined_under_targets(self, propagation: Propagation) -> Tensor:
        """r_u of a seeded sample of users, each refined for the same random items; (users, targets, d). The target is
        not masked out of the user's star here (its node id is replaced by one no neighbour has), so only the
        attention's dependence on the target is measured."""
        generator = torch.Generator().manual_seed(0)
        users = torch.randperm(self.n_users, generator=generator)[: min(CONDITIONING_USERS, self.n_users)]
        targets = torch.randperm(self.n_items, generator=generator)[: min(CONDITIONING_TARGETS, self.n_items)]
        pair_users, pair_items = users.repeat_interleave(len(targets)), targets.repeat(len(users))
        user, item = self.user_star(propagation, pair_users), self.item_star(propagation, pair_items)
        item = dataclasses.replace(item, node_id=torch.full_like(item.node_id, UNMASKED_TARGET))
        refined_user, _ = refined_pair(
            user, item, self.head_weights(), self.config.gamma, self.config.conditional_attention
        )
        return refined_user.reshape(len(users), len(targets), -1)

    @torch.no_grad()
    def export_serving(self) -> ServingExport:
        """Per-user and per-item KCAN features (representation + distilled star, + item bias) and the ``kcan``
        scorer's state."""
        was_training = self.training
        self.eval()
        try:
            propagation = self.propagate()
            users = _feature_frame(self.user_star(propagation, torch.arange(self.n_users)))
            items = _feature_frame(self.item_star(propagation, torch.arange(self.n_items)))
        finally:
            self.train(was_training)
        head = self.head_weights()
        numpy = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
        state: dict[str, object] = {
            "attention": numpy(head.attention),
            "refine": numpy(head.refine),
            "user_tower": [(numpy(w), numpy(b)) for w, b in head.user_tower],
            "item_tower": [(numpy(w), numpy(b)) for w, b in head.item_tower],
            "bias": float(head.bias),
            "gamma": self.config.gamma,
            "conditional": self.config.conditional_attention,
        }
        if head.centre_dot:
            state["centre_dot"] = True
        if head.attention_transform is not None:
            state["attention_transform"] = numpy(head.attention_transform)
        if head.bilinear:
            state["bilinear"] = True
        return ServingExport(
            user_features=users.rename_axis("user_id").reset_index(),
            item_features=items.rename_axis("item_id").reset_index(),
            scorer_kind="kcan",
            scorer_state=state,
        )


def _feature_frame(star: Star) -> pd.DataFrame:
    """One row per centre: node id, representation, flattened neighbour representations, α and ids (+ bias)."""
    rows = len(star.node_id)
    columns: dict[str, object] = {
        "kcan_node_id": star.node_id.numpy(),
        "kcan_repr": list(star.centre.numpy().astype(np.float32)),
        "kcan_nbr_repr": list(star.nbr_repr.reshape(rows, -1).numpy().astype(np.float32)),
        "kcan_nbr_alpha": list(star.nbr_alpha.numpy().astype(np.float32)),
        "kcan_nbr_id": list(star.nbr_id.numpy()),
    }
    if star.bias is not None:
        columns["kcan_bias"] = star.bias.numpy().astype(np.float32)
    return pd.DataFrame(columns)
