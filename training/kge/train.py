"""Standalone TransH training: seeded mini-batch loop with Bernoulli negatives and optional early stopping.

Batches are slices of one index permutation over a tensor of triples (no DataLoader, no per-triple Python work), so
an epoch costs a few tensor ops per batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from training.kge.evaluate import evaluate
from training.kge.sampling import BernoulliSampler
from training.kge.transh import TransH


def make_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam (fused: one kernel per tensor instead of ~10, the main per-batch cost here) or plain SGD."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, fused=True)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; expected 'adam' or 'sgd'")


@dataclass(frozen=True)
class TransHConfig:
    """Hyper-parameters of :func:`fit`; ``eval_every`` > 0 with validation triples turns on early stopping."""

    dim: int = 64
    margin: float = 1.0
    lr: float = 0.01
    batch_size: int = 1024
    epochs: int = 100
    num_negatives: int = 1
    constraint_weight: float = 0.05
    epsilon: float = 1e-3
    seed: int = 0
    optimizer: Literal["adam", "sgd"] = "adam"
    eval_every: int = 0
    patience: int = 3


class _EarlyStopping:
    """Keeps the weights of the best validation MRR; says stop after ``patience`` evaluations without a gain."""

    def __init__(self, patience: int):
        self.patience, self.best, self.misses = patience, -1.0, 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def update(self, model: TransH, mrr: float) -> bool:
        """Record one validation MRR; True when training should stop."""
        if mrr > self.best:
            self.best, self.misses = mrr, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.misses += 1
        return self.misses >= self.patience


def _run_epoch(
    model: TransH,
    optimizer: torch.optim.Optimizer,
    sampler: BernoulliSampler,
    data: torch.Tensor,
    order: torch.Tensor,
    batch_size: int,
) -> float:
    """One pass over ``data`` in ``order``; returns the mean loss per positive triple."""
    total = torch.zeros(())
    for start in range(0, len(order), batch_size):
        pos = data[order[start : start + batch_size]]
        loss = model.loss(pos, sampler.sample(pos))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.renormalize_()
        total += loss.detach() * len(pos)
    return float(total) / len(order)


def fit(
    triples: np.ndarray,
    n_nodes: int,
    n_relations: int,
    config: TransHConfig = TransHConfig(),
    valid: np.ndarray | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    n_candidates: int | None = None,
) -> tuple[TransH, list[dict]]:
    """Train TransH on (N, 3) int64 (head, relation, tail) triples; returns the model and one history dict per epoch.

    Deterministic for a fixed ``config.seed`` (init via torch.manual_seed, batch order via a numpy Generator,
    negatives via the sampler's torch Generator). With ``valid`` and ``config.eval_every`` > 0 the filtered valid MRR
    (train + valid filtered, ranked against the first ``n_candidates`` nodes) is logged, training stops after
    ``patience`` evaluations without improvement and the best weights are restored.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = TransH(n_nodes, n_relations, config.dim, config.margin, config.constraint_weight, config.epsilon)
    optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr)
    sampler = BernoulliSampler(triples, n_nodes, n_relations, config.num_negatives, seed=config.seed)
    data = torch.from_numpy(np.ascontiguousarray(triples, dtype=np.int64))
    known = triples if valid is None else np.concatenate((triples, valid))
    stopper = _EarlyStopping(config.patience)
    history: list[dict] = []
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        order = torch.from_numpy(rng.permutation(len(data)))
        loss = _run_epoch(model, optimizer, sampler, data, order, config.batch_size)
        seconds = time.perf_counter() - started
        record: dict = {"epoch": epoch, "loss": loss, "seconds": seconds, "triples_per_s": len(data) / seconds}
        stop = False
        if valid is not None and config.eval_every > 0 and epoch % config.eval_every == 0:
            record["valid_mrr"] = evaluate(model, valid, known, n_candidates=n_candidates)["mrr"]
            stop = stopper.update(model, record["valid_mrr"])
        history.append(record)
        if on_epoch is not None:
            on_epoch(epoch, record)
        if stop:
            break
    if stopper.best_state is not None:
        model.load_state_dict(stopper.best_state)
    return model, history
