"""One model fitted on one task, evaluated per epoch, with the test taken at the best validation MRR (the release's
protocol); the test metrics overall, on the full catalogue and per target-user group (cold / sparse / rest)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from training.crossdomain.evaluate import Candidates, full_catalogue, rank_rows, sample_candidates, sampled_metrics
from training.crossdomain.model import VARIANTS, CrossDomainModel, popularity_matrices, variant_config
from training.crossdomain.task import CrossDomainTask

POPULARITY = "popularity"
MODEL_NAMES = (POPULARITY, *VARIANTS)
GROUPS = {"cold": (0, 0), "sparse": (1, 3), "rest": (4, None)}  # target-domain training rows of the user


@dataclass(frozen=True)
class EvalSets:
    """Each target domain's validation and test candidates, drawn once so every model and epoch sees the same."""

    valid: dict[int, Candidates]
    test: dict[int, Candidates]
    seed: int


def eval_sets(task: CrossDomainTask, n_negatives: int, seed: int) -> EvalSets:
    """Candidates of every target domain (validation and test drawn with different seeds)."""
    return EvalSets(
        valid={d: sample_candidates(task, d, task.valid[d], n_negatives, seed) for d in task.targets},
        test={d: sample_candidates(task, d, task.test[d], n_negatives, seed + 1) for d in task.targets},
        seed=seed,
    )


@dataclass
class DomainResult:
    """One target domain's outcome: the chosen epoch, its validation MRR and the test metrics at that epoch."""

    best_epoch: int = -1
    valid_mrr: float = -1.0
    test: dict[str, float] = field(default_factory=dict)
    full: dict[str, float] = field(default_factory=dict)
    groups: dict[str, dict[str, float]] = field(default_factory=dict)
    group_rows: dict[str, int] = field(default_factory=dict)


@dataclass
class RunResult:
    """A fit of one model with one seed: per target domain results, and its cost."""

    model: str
    seed: int
    epochs: int
    seconds: float
    seconds_per_epoch: float
    domains: dict[str, DomainResult]


def _group_masks(task: CrossDomainTask, domain: int, users: np.ndarray) -> dict[str, np.ndarray]:
    counts = task.train_counts(domain)[users]
    return {name: (counts >= low) & (True if high is None else counts <= high) for name, (low, high) in GROUPS.items()}


def _score(
    task: CrossDomainTask,
    sets: EvalSets,
    domain: int,
    matrices: tuple[torch.Tensor, torch.Tensor],
    epoch: int,
    result: DomainResult,
) -> None:
    """Evaluate validation; when its MRR is the best so far, take the test metrics of this epoch."""
    users, items = matrices
    rank, auc = rank_rows(users, items, sets.valid[domain], sets.seed)
    mrr = sampled_metrics(rank, auc)["MRR"]
    if mrr <= result.valid_mrr:
        return
    result.best_epoch, result.valid_mrr = epoch, mrr
    rank, auc = rank_rows(users, items, sets.test[domain], sets.seed + 1)
    result.test = sampled_metrics(rank, auc)
    result.full = full_catalogue(task, domain, users, items, task.test[domain])
    masks = _group_masks(task, domain, sets.test[domain].users)
    result.groups = {name: sampled_metrics(rank[mask], auc[mask]) for name, mask in masks.items()}
    result.group_rows = {name: int(mask.sum()) for name, mask in masks.items()}


def run_model(task: CrossDomainTask, sets: EvalSets, name: str, seed: int, epochs: int, **config: object) -> RunResult:
    """Fit ``name`` for ``epochs`` epochs with ``seed`` (evaluating after each), or score the popularity floor."""
    started = time.perf_counter()
    results = {task.domain_names[d]: DomainResult() for d in task.targets}
    if name == POPULARITY:
        for d in task.targets:
            _score(task, sets, d, popularity_matrices(task, d), 0, results[task.domain_names[d]])
        return RunResult(name, seed, 0, time.perf_counter() - started, 0.0, results)
    model = CrossDomainModel(task, variant_config(name, seed=seed, **config))
    optimizer = model.optimizer()
    training = 0.0
    for epoch in range(1, epochs + 1):
        tick = time.perf_counter()
        model.train_epoch(optimizer, pretraining=epoch <= model.config.pretrain_epochs)
        training += time.perf_counter() - tick
        model.fit_mappings()
        for d in task.targets:
            _score(task, sets, d, model.user_item_matrices(d), epoch, results[task.domain_names[d]])
    return RunResult(name, seed, epochs, time.perf_counter() - started, training / max(epochs, 1), results)
