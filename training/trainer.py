"""The one training loop every registered recommender goes through.

``prepare_data`` makes the split of a protocol (CTR 6:2:2 rows or the top-K per-user 8:1:1 hold-out, seeded), the
CKG from training positives only and the activity terciles; ``fit`` trains any model in
:data:`training.models.base.MODELS` with the model's optimiser (``make_optimizer``: Adam, or lazy Adam beside it for
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
from dataclasses import asdict, dataclass, field
from functools import partial
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
from training.resume import TrainingState, load_state, numpy_rng_state, restore_numpy_rng, save_state


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


def fit_identity(model_name: str, config: ModelConfig, data: TrainingData, seed: int) -> dict[str, object]:
    """What a resumable state must match to continue a fit: the model, its config, the data and the seed."""
    return {
        "model": model_name,
        "config": config.model_dump(mode="json"),
        "dataset": data.dataset.fingerprint,
        "train_rows": len(data.split.train),
        "seed": seed,
    }


@dataclass
class _EarlyStopping:
    """The best validation AUC so far, its epoch and weights, and the epochs since it: what ends a fit and what the
    fit keeps."""

    patience: int
    best_auc: float
    best_state: dict[str, torch.Tensor]
    best_epoch: int = 0
    stale: int = 0

    def improved(self, epoch: int, auc: float, model: Recommender) -> bool:
        """Record ``epoch``'s validation AUC; True (and the weights kept) when it beats the best so far."""
        if auc > self.best_auc:
            self.best_auc, self.best_state, self.best_epoch, self.stale = auc, _snapshot(model), epoch, 0
            return True
        self.stale += 1
        return False

    @property
    def exhausted(self) -> bool:
        """``patience`` epochs in a row without a better validation AUC."""
        return self.stale >= self.patience


@dataclass
class _EpochProgress:
    """How far an epoch has got: its shuffled row order, the next row to train on, and the loss, steps and training
    seconds so far (carried over from the processes that worked on it before, when the fit was resumed)."""

    order: torch.Tensor
    next_row: int = 0
    loss: float = 0.0
    batches: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class _Rows:
    """A split's labelled rows as aligned tensors."""

    users: torch.Tensor
    items: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def of(cls, rows: pd.DataFrame) -> _Rows:
        return cls(*rows_as_tensors(rows))


def _epoch_order(n_rows: int, generator: torch.Generator, parallel: DataParallel) -> torch.Tensor:
    """This worker's shard of a fresh shuffle of the training rows.

    The shards are equal (a few rows an epoch are left out when the count does not divide), so every worker takes as
    many steps as the others: a DDP step waits for all of them."""
    order = torch.randperm(n_rows, generator=generator)
    return order[: len(order) - len(order) % parallel.world_size][parallel.rank :: parallel.world_size]


def _train_epoch(
    step: Callable[..., torch.Tensor | tuple[Callable[[], torch.Tensor], ...]],
    optimizer: torch.optim.Optimizer | SparseRowsAdam,
    rows: _Rows,
    progress: _EpochProgress,
    batch_size: int,
    parallel: DataParallel,
    save: Callable[[_EpochProgress], None] | None,
    save_every_s: float,
) -> None:
    """Take the epoch's remaining steps from ``progress.next_row``, adding to ``progress``; ``save`` it every
    ``save_every_s`` seconds (the time spent saving is not training time)."""
    started = last_save = time.perf_counter()
    for start in range(progress.next_row, len(progress.order), batch_size):
        index = progress.order[start : start + batch_size]
        losses = step(rows.users[index], rows.items[index], rows.labels[index])
        if isinstance(losses, tuple):  # an alternating schedule: each part computed after the previous step
            if parallel.world_size > 1:
                raise ValueError("a model whose loss takes several steps cannot be trained data-parallel")
            progress.loss += sum(_minimise(optimizer, part()) for part in losses)
        else:
            progress.loss += _minimise(optimizer, losses)
        progress.batches += 1
        progress.next_row = start + batch_size
        if save is not None and time.perf_counter() - last_save >= save_every_s:
            progress.seconds += time.perf_counter() - started
            save(progress)
            started = last_save = time.perf_counter()
    progress.seconds += time.perf_counter() - started


def _restore(
    state: TrainingState,
    model: Recommender,
    optimizer: torch.optim.Optimizer | SparseRowsAdam,
    generator: torch.Generator,
) -> None:
    """Put a saved fit's weights, optimiser moments and every random generator back, so the next step is the one an
    uninterrupted fit would take."""
    model.load_state_dict(state.model)
    optimizer.load_state_dict(state.optimizer)
    model.restore_generators(state.model_rngs)
    generator.set_state(state.shuffle_rng)
    torch.set_rng_state(state.torch_rng)
    restore_numpy_rng(state.numpy_rng)


def _state(
    identity: dict[str, object],
    epoch: int,
    at: _EpochProgress | None,
    model: Recommender,
    optimizer: torch.optim.Optimizer | SparseRowsAdam,
    generator: torch.Generator,
    stopping: _EarlyStopping,
    history: list[EpochRecord],
) -> TrainingState:
    """The whole state of a fit within ``epoch`` at ``at``, or before it (``at`` None): what :func:`_restore` and
    the early-stopping bookkeeping need to continue it."""
    return TrainingState(
        identity=identity,
        epoch=epoch,
        next_row=at.next_row if at else 0,
        order=at.order if at else None,
        epoch_loss=at.loss if at else 0.0,
        epoch_batches=at.batches if at else 0,
        epoch_seconds=at.seconds if at else 0.0,
        model=model.state_dict(),
        optimizer=optimizer.state_dict(),
        shuffle_rng=generator.get_state(),
        torch_rng=torch.get_rng_state(),
        numpy_rng=numpy_rng_state(),
        model_rngs=model.generator_states(),
        best_auc=float(stopping.best_auc),
        best_state=stopping.best_state,
        best_epoch=stopping.best_epoch,
        stale=stopping.stale,
        history=[asdict(record) for record in history],
    )


def fit(
    model_name: str,
    data: TrainingData,
    config: ModelConfig | None = None,
    seed: int = 0,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    checkpoint_path: Path | None = None,
    parallel: DataParallel = SINGLE_PROCESS,
    resume_path: Path | None = None,
    save_every_s: float = 600.0,
) -> TrainResult:
    """Train ``model_name`` on ``data``'s training rows; early-stop on validation AUC and restore the best epoch.

    ``on_epoch`` is called with each epoch's record (e.g. to log to MLflow); ``checkpoint_path``, if given, receives
    the best state_dict whenever validation AUC improves. ``parallel`` makes this one worker of a data-parallel fit
    (see the module docstring); a worker's epoch record has its own shard's mean loss.

    ``resume_path`` makes the fit resumable (:mod:`training.resume`): if the file exists the fit continues from it
    (refused, naming the differing fields, if another fit wrote it); the state is saved there after every epoch and
    every ``save_every_s`` seconds within one, and removed when the fit ends. An epoch's ``seconds`` then add up the
    training time of every process that worked on it.
    """
    load_models()
    if model_name not in MODELS:
        raise KeyError(f"unknown model {model_name!r}; registered: {', '.join(sorted(MODELS))}")
    if resume_path is not None and parallel.world_size > 1:
        raise ValueError("a resumable fit runs in one process; data-parallel workers cannot resume from one state")
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
    train, valid = _Rows.of(data.split.train), _Rows.of(data.split.valid)
    generator = torch.Generator().manual_seed(seed)
    result = TrainResult(model=model, config=config)
    stopping = _EarlyStopping(config.patience, -np.inf, _snapshot(model))
    identity = fit_identity(model_name, config, data, seed)
    first_epoch, progress = 1, None
    if resume_path is not None and resume_path.exists():
        resumed = load_state(resume_path, identity)
        _restore(resumed, model, optimizer, generator)
        stopping = _EarlyStopping(
            config.patience, resumed.best_auc, resumed.best_state, resumed.best_epoch, resumed.stale
        )
        result.history = [EpochRecord(**record) for record in resumed.history]
        first_epoch = resumed.epoch
        if resumed.order is not None:  # mid-epoch: the per-epoch hook's work is in the state
            progress = _EpochProgress(
                resumed.order, resumed.next_row, resumed.epoch_loss, resumed.epoch_batches, resumed.epoch_seconds
            )

    def save(epoch: int, at: _EpochProgress | None) -> None:
        """Write the fit's whole state to ``resume_path``: within ``epoch`` at ``at``, or before it (None)."""
        assert resume_path is not None
        save_state(resume_path, _state(identity, epoch, at, model, optimizer, generator, stopping, result.history))

    for epoch in range(first_epoch, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        if progress is None:
            model.on_epoch_start(epoch)
            progress = _EpochProgress(_epoch_order(len(train.users), generator, parallel))
        progress.seconds += time.perf_counter() - started
        save_within = None if resume_path is None else partial(save, epoch)
        _train_epoch(step, optimizer, train, progress, batch_size, parallel, save_within, save_every_s)
        auc, f1 = auc_f1(valid.labels.numpy(), predict_rows(model, valid.users, valid.items))
        auc = parallel.agree(auc)
        record = EpochRecord(epoch, progress.loss / max(progress.batches, 1), auc, f1, progress.seconds)
        result.history.append(record)
        progress = None
        if on_epoch is not None:
            on_epoch(record)
        if stopping.improved(epoch, auc, model):
            if checkpoint_path is not None:
                torch.save(stopping.best_state, checkpoint_path)
        elif stopping.exhausted:
            break
        if resume_path is not None and epoch < config.epochs:
            save(epoch + 1, None)
    if resume_path is not None:
        resume_path.unlink(missing_ok=True)
    result.best_epoch = stopping.best_epoch
    model.load_state_dict(stopping.best_state)
    return _finish(result, data)
