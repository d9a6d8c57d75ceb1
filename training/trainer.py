"""The one training loop every registered recommender goes through.

``prepare_data`` makes the split of a protocol (CTR 6:2:2 rows or the top-K per-user 8:1:1 hold-out, seeded), the
CKG from training positives only and the activity terciles; ``fit`` trains any model in
:data:`training.models.base.MODELS` with the model's optimiser (``make_optimizer``: Adam, or SparseAdam beside it for
sparse row gradients) on shuffled mini-batches of labelled training rows, validates on the *validation* split after
every epoch, stops early after ``patience`` epochs without a better validation AUC and restores the best epoch's
weights. The test split is never read here.

Data-parallel training (:mod:`training.distributed`, Ray Train) runs this same loop in every worker with a
:class:`DataParallel`: each worker takes its shard of every epoch's shuffled rows (``batch_size / world_size`` rows a
step, so a step covers the single-process batch), its loss goes through the DDP-wrapped :class:`StepModule` so the
gradients are averaged across workers before Adam steps, and every worker adopts rank 0's validation AUC, so the
early-stopping decisions cannot diverge.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from training.data.dataset import Dataset
from training.data.splits import Protocol, activity_terciles, make_split
from training.evaluation.metrics import auc_f1
from training.graphs.ckg import build_ckg
from training.models.base import MODELS, Batch, ModelConfig, Recommender, TrainingData, load_models
from training.models.optimizers import SparseRowsAdam


def prepare_data(dataset: Dataset, seed: int, protocol: Protocol = "ctr") -> TrainingData:
    """The protocol's seeded split, the CKG of training positives, and activity terciles from training positives."""
    split = make_split(dataset.interactions, seed, protocol)
    positives = split.train_positives()
    return TrainingData(
        dataset=dataset,
        split=split,
        ckg=build_ckg(dataset, positives),
        terciles=activity_terciles(positives, dataset.n_users),
    )


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did: mean training loss, validation AUC/F1, wall seconds of the training part."""

    epoch: int
    train_loss: float
    valid_auc: float
    valid_f1: float
    seconds: float


@dataclass
class TrainResult:
    """A trained model (best validation epoch restored), its config and the per-epoch history."""

    model: Recommender
    config: ModelConfig
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    diagnostics: dict[str, float] = field(default_factory=dict)  # model.diagnostics of the restored model

    @property
    def seconds_per_epoch(self) -> float:
        """Median wall seconds of the training part of an epoch (validation excluded)."""
        return float(np.median([r.seconds for r in self.history])) if self.history else float("nan")

    @property
    def best_valid_auc(self) -> float:
        """Validation AUC of the restored epoch (NaN when no epoch ran: a model without parameters)."""
        return next((r.valid_auc for r in self.history if r.epoch == self.best_epoch), float("nan"))


def rows_as_tensors(rows: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(users, items, labels) int64 tensors of a labelled interaction table."""
    return tuple(torch.from_numpy(rows[c].to_numpy(dtype=np.int64)) for c in ("user", "item", "label"))  # type: ignore[return-value]


@torch.no_grad()
def predict_rows(model: Recommender, users: torch.Tensor, items: torch.Tensor, batch_size: int = 65536) -> np.ndarray:
    """Logits of aligned pairs in eval mode, in chunks; restores the model's previous train/eval mode."""
    was_training = model.training
    model.eval()
    try:
        chunks = [
            model.predict_logits(users[s : s + batch_size], items[s : s + batch_size])
            for s in range(0, len(users), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(chunks).float().numpy() if chunks else np.empty(0, dtype=np.float32)


def resolve_config(model_name: str, config: ModelConfig | None) -> ModelConfig:
    """The model's own Config: defaults when ``config`` is None, else ``config`` validated as that class."""
    config_class = MODELS[model_name].Config
    if config is None:
        return config_class()
    if isinstance(config, config_class):
        return config
    return config_class.model_validate(config.model_dump())


def set_threads(threads: int) -> None:
    """CPU threads for torch and for DGL's kernels (one thread is fastest for these small models on a busy CPU)."""
    from training.dgl_compat import dgl

    torch.set_num_threads(threads)
    dgl.utils.set_num_threads(threads)


def _minimise(optimizer: torch.optim.Optimizer | SparseRowsAdam, loss: torch.Tensor) -> float:
    """One optimizer step on ``loss``; its value."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def seed_everything(seed: int) -> None:
    """Seed torch and numpy global generators (models draw their initial weights and sampled negatives from them)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


class StepModule(torch.nn.Module):
    """A recommender's training loss as ``forward``: DistributedDataParallel synchronises the gradients of what its
    wrapped module's forward computed, and a model's loss is ``training_loss``, not ``forward``."""

    def __init__(self, model: Recommender):
        super().__init__()
        self.model = model

    def forward(
        self, users: torch.Tensor, items: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor | tuple[Callable[[], torch.Tensor], ...]:
        """The loss of one mini-batch of labelled rows."""
        return self.model.training_loss(Batch(users, items, labels))


@dataclass(frozen=True)
class DataParallel:
    """This process's part in a data-parallel fit: its rank among ``world_size`` workers, how the step module is
    wrapped (DDP), and ``agree`` (every worker gets rank 0's value of a number)."""

    rank: int = 0
    world_size: int = 1
    wrap: Callable[[torch.nn.Module], torch.nn.Module] = lambda module: module
    agree: Callable[[float], float] = lambda value: value


SINGLE_PROCESS = DataParallel()


def _snapshot(model: Recommender) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _finish(result: TrainResult, data: TrainingData) -> TrainResult:
    """Put the trained model in eval mode and record its diagnostics, once per fit (issue 11)."""
    result.model.eval()
    with torch.no_grad():
        result.diagnostics = result.model.diagnostics(data)
    return result


def fit(
    model_name: str,
    data: TrainingData,
    config: ModelConfig | None = None,
    seed: int = 0,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    checkpoint_path: Path | None = None,
    parallel: DataParallel = SINGLE_PROCESS,
) -> TrainResult:
    """Train ``model_name`` on ``data``'s training rows; early-stop on validation AUC and restore the best epoch.

    ``on_epoch`` is called with each epoch's record (e.g. to log to MLflow); ``checkpoint_path``, if given, receives
    the best state_dict whenever validation AUC improves. ``parallel`` makes this one worker of a data-parallel fit
    (see the module docstring); a worker's epoch record has its own shard's mean loss.
    """
    load_models()
    if model_name not in MODELS:
        raise KeyError(f"unknown model {model_name!r}; registered: {', '.join(sorted(MODELS))}")
    config = resolve_config(model_name, config)
    seed_everything(seed)
    model = MODELS[model_name](config, data)
    if not any(p.requires_grad for p in model.parameters()):  # nothing to learn (popularity): zero epochs
        return _finish(TrainResult(model=model, config=config), data)
    step = parallel.wrap(StepModule(model))
    if parallel.world_size > 1:  # same initial weights everywhere, but each worker draws its own negatives/samples
        seed_everything(seed + parallel.rank)
    batch_size = max(1, config.batch_size // parallel.world_size)
    optimizer = model.make_optimizer()
    users, items, labels = rows_as_tensors(data.split.train)
    valid_users, valid_items, valid_labels = rows_as_tensors(data.split.valid)
    generator = torch.Generator().manual_seed(seed)
    result = TrainResult(model=model, config=config)
    best_auc, best_state, stale = -np.inf, _snapshot(model), 0
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        model.on_epoch_start(epoch)
        order = torch.randperm(len(users), generator=generator)
        # equal shards (a few rows an epoch left out when the count does not divide), so every worker takes as many
        # steps as the others: a DDP step waits for all of them
        order = order[: len(order) - len(order) % parallel.world_size][parallel.rank :: parallel.world_size]
        total, n_batches = 0.0, 0
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            losses = step(users[index], items[index], labels[index])
            if isinstance(losses, tuple):  # an alternating schedule: each part computed after the previous step
                if parallel.world_size > 1:
                    raise ValueError(f"{model_name}: a loss of several steps cannot be trained data-parallel")
                total += sum(_minimise(optimizer, part()) for part in losses)
            else:
                total += _minimise(optimizer, losses)
            n_batches += 1
        seconds = time.perf_counter() - started
        auc, f1 = auc_f1(valid_labels.numpy(), predict_rows(model, valid_users, valid_items))
        auc = parallel.agree(auc)
        record = EpochRecord(epoch, total / max(n_batches, 1), auc, f1, seconds)
        result.history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if auc > best_auc:
            best_auc, best_state, stale, result.best_epoch = auc, _snapshot(model), 0, epoch
            if checkpoint_path is not None:
                torch.save(best_state, checkpoint_path)
        else:
            stale += 1
            if stale >= config.patience:
                break
    model.load_state_dict(best_state)
    return _finish(result, data)
