"""RippleNet (Wang et al., "RippleNet: Propagating User Preferences on the Knowledge Graph ...", CIKM 2018).

Ripple sets: hop 0 seeds = the user's *training* positives; the hop-k memory is a fixed-size sample (``n_memory``,
with replacement when fewer exist) of KG triples (h, r, t) whose head is a hop-(k-1) seed, and hop-k seeds are their
tails. Per hop: p = softmax_i(vᵀ R_i h_i), o = Σ p_i t_i, item update v ← W(v + o) ("plus_transform"); logit =
v_finalᵀ Σ_hops o. Loss = BCE on labelled rows (``loss="bce"``, the paper's; or ``"bpr"``: the batch's positives
against uniformly sampled items, the helper the other baselines share) + ``kge_weight`` × -mean σ(hᵀ R t) over
the batch's memories + ``l2_weight`` × ‖h, t, R‖² of those memories. Ripple sets are sampled once, with the
model's seed.

Simplified: KG triples are used with their inverses (relation + R) so hops can also walk attribute → item; a user
with no training positive (or a hop with no triple) gets a padding memory (zero embeddings), i.e. logit 0.

Serving: the user side of the score depends on the candidate item only through the attention vᵀ(R h), so each user
exports ``memory_rh`` = R_i h_i and ``memory_tail`` = t_i (hops × n_memory × dim, flattened) and each item its
``embedding``; the ``ripplenet`` scorer needs only W. The logits are identical (same formula, same order of ops).
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from serving.scoring.embedding import ripple_logits
from training.models.base import Batch, ModelConfig, Recommender, ServingExport, TrainingData, register_model
from training.models.bpr_mf import LossKind, embedding_frame, recommendation_loss


class RippleNetConfig(ModelConfig):
    """RippleNet hyper-parameters: the paper's Last.FM settings (dim 16, 2 hops, 32 memories, KGE 0.01, L2 1e-7)
    except lr, chosen on Last.FM validation AUC (seed 2021): 5e-3 0.811 vs the paper's 2e-2 0.802."""

    loss: LossKind = "bce"
    dim: int = 16
    n_hop: int = 2
    n_memory: int = 32
    kge_weight: float = 0.01
    l2_weight: float = 1e-7
    lr: float = 5e-3


def ripple_sets(
    positives: pd.DataFrame,
    triples: np.ndarray,
    n_users: int,
    n_hop: int,
    n_memory: int,
    pad: tuple[int, int, int],
    rng: np.random.Generator,
) -> np.ndarray:
    """(n_users, n_hop, n_memory, 3) memories (head, relation, tail); slots without any triple hold ``pad``."""
    memories = np.empty((n_users, n_hop, n_memory, 3), dtype=np.int64)
    memories[:] = pad
    order = np.argsort(triples[:, 0], kind="stable")
    triples = triples[order]
    heads = triples[:, 0]
    seeds = positives[["user", "item"]].drop_duplicates().to_numpy(dtype=np.int64)  # (user, entity) pairs
    for hop in range(n_hop):
        start = np.searchsorted(heads, seeds[:, 1], side="left")
        length = np.searchsorted(heads, seeds[:, 1], side="right") - start
        owner = np.repeat(seeds[:, 0], length)
        offsets = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
        candidates = triples[np.repeat(start, length) + offsets]  # every (user, triple) of this hop
        by_user = np.argsort(owner, kind="stable")
        owner, candidates = owner[by_user], candidates[by_user]
        first = np.searchsorted(owner, np.arange(n_users), side="left")
        count = np.searchsorted(owner, np.arange(n_users), side="right") - first
        has = count > 0
        pick = first[has, None] + (rng.random((int(has.sum()), n_memory)) * count[has, None]).astype(np.int64)
        memories[has, hop] = candidates[pick]
        if not has.all() and hop > 0:  # keep the previous hop where this one is empty (as the original code)
            memories[~has, hop] = memories[~has, hop - 1]
        chosen = memories[has, hop]
        seeds = np.unique(np.stack([np.repeat(np.flatnonzero(has), n_memory), chosen[:, :, 2].reshape(-1)], 1), axis=0)
    return memories


@register_model
class RippleNet(Recommender):
    """Preference propagation over ripple sets with hop-wise memory attention."""

    name = "ripplenet"
    Config = RippleNetConfig
    config: RippleNetConfig

    def __init__(self, config: RippleNetConfig, data: TrainingData):
        super().__init__(config, data)
        dataset = data.dataset
        kg = dataset.kg[["head", "relation", "tail"]].to_numpy(dtype=np.int64)
        inverse = np.stack([kg[:, 2], kg[:, 1] + dataset.n_relations, kg[:, 0]], axis=1)
        pad_entity, n_relations = dataset.n_entities, 2 * dataset.n_relations
        rng = np.random.default_rng(torch.initial_seed() % 2**63)
        memories = ripple_sets(
            data.train_positives,
            np.concatenate([kg, inverse]),
            dataset.n_users,
            config.n_hop,
            config.n_memory,
            (pad_entity, n_relations, pad_entity),
            rng,
        )
        self.register_buffer("memories", torch.from_numpy(memories))
        # R h depends only on the (head, relation) pair: compute it once per distinct pair, one relation at a time
        pairs, pair_of_slot = np.unique(memories[..., [1, 0]].reshape(-1, 2), axis=0, return_inverse=True)
        self.register_buffer("memory_pair", torch.from_numpy(pair_of_slot.reshape(memories.shape[:-1])))
        self.register_buffer("pair_head", torch.from_numpy(pairs[:, 1]))
        bounds = np.searchsorted(pairs[:, 0], np.arange(n_relations + 2))
        self.relation_slices = [(r, int(a), int(b)) for r, (a, b) in enumerate(pairwise(bounds)) if b > a]
        self.n_users, self.n_items = dataset.n_users, dataset.n_items
        self.entity = nn.Embedding(pad_entity + 1, config.dim, padding_idx=pad_entity)
        self.relation = nn.Parameter(torch.empty(n_relations + 1, config.dim, config.dim))
        self.transform = nn.Linear(config.dim, config.dim, bias=False)
        nn.init.xavier_uniform_(self.entity.weight[:-1])
        nn.init.xavier_uniform_(self.relation)

    def _pair_rh(self) -> Tensor:
        """R_r h for every distinct (relation, head) pair of the ripple sets, (pairs, d)."""
        heads = self.entity(self.pair_head)
        return torch.cat([heads[a:b] @ self.relation[r].T for r, a, b in self.relation_slices])

    def _memory(self, users: Tensor, pair_rh: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """R h and t of the users' memories, each (B, hops, M, d); ``pair_rh`` reuses :meth:`_pair_rh`'s result."""
        pair_rh = self._pair_rh() if pair_rh is None else pair_rh
        return pair_rh[self.memory_pair[users]], self.entity(self.memories[users][..., 2])

    def _logits(self, users: Tensor, items: Tensor, pair_rh: Tensor | None = None) -> Tensor:
        rh, t = self._memory(users, pair_rh)
        return ripple_logits(rh, t, self.entity(items), self.transform.weight)

    def training_loss(self, batch: Batch) -> Tensor:
        """BCE (or BPR) + KGE + L2 terms of RippleNet (KGE and L2 over the batch users' memory slots: ‖h‖², ‖t‖²,
        ‖R‖²)."""
        pair_rh = self._pair_rh()
        score = lambda users, items: self._logits(users, items, pair_rh)  # noqa: E731
        rec = recommendation_loss(self.config.loss, score, batch, self.n_items)
        rh, t = self._memory(batch.users, pair_rh)
        kge = -torch.sigmoid((rh * t).sum(dim=-1)).mean()
        memory = self.memories[batch.users]
        h = self.entity(memory[..., 0])
        relation_uses = torch.bincount(memory[..., 1].reshape(-1), minlength=len(self.relation))
        l2 = (h * h).sum() + (t * t).sum() + (relation_uses * self.relation.pow(2).sum(dim=(1, 2))).sum()
        return rec + self.config.kge_weight * kge + self.config.l2_weight * l2

    def predict_logits(self, users: Tensor, items: Tensor) -> Tensor:
        """RippleNet logit."""
        return self._logits(users, items)

    @torch.no_grad()
    def export_serving(self) -> ServingExport:
        """``memory_rh`` / ``memory_tail`` per user (flattened), ``embedding`` per item; W in the scorer state."""
        rh, t = self._memory(torch.arange(self.n_users))
        return ServingExport(
            user_features=embedding_frame(
                "user_id",
                np.arange(self.n_users),
                memory_rh=rh.reshape(self.n_users, -1).numpy(),
                memory_tail=t.reshape(self.n_users, -1).numpy(),
            ),
            item_features=embedding_frame(
                "item_id", np.arange(self.n_items), embedding=self.entity.weight[: self.n_items].numpy()
            ),
            scorer_kind="ripplenet",
            scorer_state={
                "transform": self.transform.weight.numpy().copy(),
                "n_hop": self.config.n_hop,
                "n_memory": self.config.n_memory,
            },
        )
