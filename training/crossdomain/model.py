"""CD-GNN and the graph baselines it is compared with, as one model with switches, so every variant runs the same code
path, loss, sampler and budget.

CD-GNN (the default config):
- **per-domain, unshared layers**: each domain has its own encoder over its own user–item graph (own user and item
  embeddings, own per-layer linear maps), because the two domains' feature distributions differ;
- **cross view**: a shared user's target-domain score is also trained from the *source* encoder's representation of
  that user (through the target head), which is the path a user cold in the target takes at inference;
- **domain-invariant alignment** of the shared users' representations from the two encoders (MMD by default, CORAL as
  option; :mod:`training.crossdomain.align` says why), so the source representation lies where the target head
  expects a target one;
- **target-domain ranking head**: a per-domain linear map of the user representation; the score is its dot product
  with the item representation (so the trained model is a pair of per-entity feature tables and a dot product).

A user's representation for domain d is the mean of the views they have: their own-domain view when they have
training rows in d, the source view when they have rows in the other domain (with the cross view on). Baselines:
``lightgcn-target`` (each domain alone, LightGCN), ``gcn-merged`` (one graph of both domains, one shared encoder),
``cdgnn-noalign``, ``cdgnn-pretrain`` (the first two epochs of the budget pre-train each encoder on its own
domain's edges) and ``emcdr`` (single-domain LightGCN plus an MLP fitted on shared users to map source
representations to target ones, Man et al. IJCAI 2017, used for users cold in the target).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn

from training.crossdomain.align import ALIGNMENTS
from training.crossdomain.graph import GraphEncoder, domain_graph, merged_graph
from training.crossdomain.task import CrossDomainTask

MAPPING_STEPS = 200  # full-batch Adam steps of the EMCDR mapping each time it is refitted
MAPPING_LR = 1e-2


class CrossDomainConfig(BaseModel):
    """Switches and hyper-parameters; the defaults are CD-GNN with MMD alignment."""

    model_config = ConfigDict(extra="forbid")

    graph: Literal["per_domain", "merged"] = "per_domain"
    transforms: bool = True  # per-layer linear maps (GCN); False = LightGCN
    cross_view: bool = True
    align: Literal["mmd", "coral", "none"] = "mmd"
    align_weight: float = 1.0
    head: bool = True
    mapping: bool = False  # EMCDR: map source representations of target-cold users through a fitted MLP
    pretrain_epochs: int = 0  # first epochs of the budget spent on per-domain edge reconstruction only
    dim: int = 32
    layers: int = 2
    lr: float = 1e-2
    reg: float = 1e-4
    batch_size: int = 8192
    align_batch: int = 1024
    seed: int = 0


VARIANTS: dict[str, dict[str, object]] = {
    "lightgcn-target": {"transforms": False, "cross_view": False, "align": "none", "head": False},
    "gcn-merged": {"graph": "merged", "cross_view": False, "align": "none", "head": False},
    "emcdr": {"transforms": False, "cross_view": False, "align": "none", "head": False, "mapping": True},
    "cdgnn-noalign": {"align": "none"},
    "cdgnn": {},
    "cdgnn-coral": {"align": "coral"},
    "cdgnn-pretrain": {"pretrain_epochs": 2},
}


def variant_config(name: str, **overrides: object) -> CrossDomainConfig:
    """The config of a named variant with overrides (epochs-independent settings such as dim or seed)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown cross-domain model {name!r}; choose from {', '.join(VARIANTS)}")
    return CrossDomainConfig(**(VARIANTS[name] | overrides))


def _identity_linear(dim: int) -> nn.Linear:
    linear = nn.Linear(dim, dim, bias=False)
    nn.init.eye_(linear.weight)
    return linear


def bpr(users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Mean BPR loss -log σ(<u, i+> - <u, i->)."""
    return -F.logsigmoid((users * positives).sum(1) - (users * negatives).sum(1)).mean()


class CrossDomainModel(nn.Module):
    """One variant over one task: encoders, heads and (EMCDR) mappings; see the module docstring."""

    def __init__(self, task: CrossDomainTask, config: CrossDomainConfig) -> None:
        super().__init__()
        torch.manual_seed(config.seed)
        self.task, self.config = task, config
        self.n_users = task.n_users
        graphs = [merged_graph(task)] if config.graph == "merged" else [domain_graph(task, d) for d in (0, 1)]
        self.encoders = nn.ModuleList(GraphEncoder(g, config.dim, config.layers, config.transforms) for g in graphs)
        self.heads = nn.ModuleList(_identity_linear(config.dim) for _ in range(2 if config.head else 0))
        self.mappings = nn.ModuleList(
            nn.Sequential(nn.Linear(config.dim, 2 * config.dim), nn.Tanh(), nn.Linear(2 * config.dim, config.dim))
            for _ in range(2 if config.mapping else 0)
        )
        self.has_train = torch.as_tensor(task.has_train)
        self.rng = np.random.default_rng(config.seed)

    def _outputs(self) -> list[torch.Tensor]:
        return [encoder() for encoder in self.encoders]

    def _views(self, outputs: list[torch.Tensor], domain: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Own-domain user view, other-domain user view and the domain's item representations."""
        n = self.n_users
        if self.config.graph == "merged":
            start = n + (0 if domain == 0 else self.task.n_items[0])
            users = outputs[0][:n]
            return users, users, outputs[0][start : start + self.task.n_items[domain]]
        return outputs[domain][:n], outputs[1 - domain][:n], outputs[domain][n:]

    def _head(self, domain: int, users: torch.Tensor) -> torch.Tensor:
        return self.heads[domain](users) if self.config.head else users

    def _combine(self, domain: int, users: torch.Tensor, own: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """The representation of ``users`` for ``domain`` from the views they have (module docstring)."""
        has_own, has_source = self.has_train[domain, users], self.has_train[1 - domain, users]
        if self.config.mapping:
            cold = (~has_own & has_source).unsqueeze(1)
            return torch.where(cold, self.mappings[domain](source), own)
        if not self.config.cross_view or self.config.graph == "merged":
            return own
        w_source = has_source.float().unsqueeze(1)
        w_own = (has_own | ~has_source).float().unsqueeze(1)
        return (w_own * own + w_source * source) / (w_own + w_source)

    def user_item_matrices(self, domain: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(n_users, dim) users and (n_items_domain, dim) items whose dot product is the model's score in ``domain``."""
        with torch.no_grad():
            own, source, items = self._views(self._outputs(), domain)
            users = torch.arange(self.n_users)
            return self._head(domain, self._combine(domain, users, own, source)), items

    def _domain_loss(
        self, outputs: list[torch.Tensor], domain: int, rows: np.ndarray, pretraining: bool = False
    ) -> torch.Tensor:
        own, source, items = self._views(outputs, domain)
        users = torch.as_tensor(rows[:, 0])
        positives = items[torch.as_tensor(rows[:, 1])]
        negatives = items[torch.as_tensor(self.rng.integers(0, self.task.n_items[domain], len(rows)))]
        if pretraining:
            reps = own[users]  # reconstruct the domain's own edges from its encoder alone: no head, view or transfer
        else:
            reps = self._head(domain, self._combine(domain, users, own[users], source[users]))
        loss = bpr(reps, positives, negatives)
        if self.config.cross_view and self.config.graph == "per_domain" and not pretraining:
            shared = self.has_train[1 - domain, users]
            if shared.any():
                cross = self._head(domain, source[users[shared]])
                loss = loss + bpr(cross, positives[shared], negatives[shared])
        base = self.encoders[0 if self.config.graph == "merged" else domain].embedding.weight
        regularised = base[users].pow(2).sum() + positives.pow(2).sum() + negatives.pow(2).sum()
        return loss + self.config.reg * regularised / len(rows)

    def _alignment_loss(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        shared = self.task.shared_users
        if self.config.align == "none" or self.config.graph == "merged" or len(shared) < 2:
            return torch.zeros(())
        picked = torch.as_tensor(self.rng.choice(shared, min(self.config.align_batch, len(shared)), replace=False))
        return self.config.align_weight * ALIGNMENTS[self.config.align](outputs[0][picked], outputs[1][picked])

    def train_epoch(self, optimizer: torch.optim.Optimizer, pretraining: bool = False) -> float:
        """One pass over both domains' training rows (batches hold rows of both, in proportion); the mean loss.

        ``pretraining``: the optional pre-training for scarce target labels, reconstruction of each domain's edges
        by its own encoder (no head, cross view or alignment), so the encoders, the source one above all, start the
        transfer objective with representations already shaped by the abundant side."""
        n_steps = max(1, -(-sum(len(t) for t in self.task.train) // self.config.batch_size))
        batches = [np.array_split(self.rng.permutation(rows), n_steps) for rows in self.task.train]
        total = 0.0
        for step in range(n_steps):
            outputs = self._outputs()
            loss = torch.zeros(()) if pretraining else self._alignment_loss(outputs)
            for domain in (0, 1):
                if len(batches[domain][step]):
                    loss = loss + self._domain_loss(outputs, domain, batches[domain][step], pretraining)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        return total / n_steps

    def fit_mappings(self) -> None:
        """EMCDR: fit each domain's mapping from shared users' source representations to their own-domain ones (the
        encoders held fixed), so users cold in that domain can be represented. A no-op for other variants."""
        if not self.config.mapping or len(self.task.shared_users) == 0:
            return
        shared = torch.as_tensor(self.task.shared_users)
        with torch.no_grad():
            outputs = self._outputs()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(self.config.seed)
        for domain in (0, 1):
            own, source, _ = self._views(outputs, domain)
            mapping = self.mappings[domain]
            for layer in mapping:
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()
            optimizer = torch.optim.Adam(mapping.parameters(), lr=MAPPING_LR)
            for _ in range(MAPPING_STEPS):
                loss = (mapping(source[shared]) - own[shared]).pow(2).sum(1).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        torch.random.set_rng_state(generator_state)

    def optimizer(self) -> torch.optim.Optimizer:
        """Adam over the encoders and heads (the EMCDR mappings are fitted apart, by :meth:`fit_mappings`)."""
        return torch.optim.Adam([*self.encoders.parameters(), *self.heads.parameters()], lr=self.config.lr)


def popularity_matrices(task: CrossDomainTask, domain: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The popularity floor as a dot product: every user 1, each item its training count in ``domain``."""
    counts = np.bincount(task.train[domain][:, 1], minlength=task.n_items[domain]).astype(np.float32)
    return torch.ones(task.n_users, 1), torch.as_tensor(counts).unsqueeze(1)
