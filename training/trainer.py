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
from dataclasses import asdict, dataclass, field
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
    users, items, labels = rows_as_tensors(data.split.train)
    valid_users, valid_items, valid_labels = rows_as_tensors(data.split.valid)
    generator = torch.Generator().manual_seed(seed)
    result = TrainResult(model=model, config=config)
    best_auc, best_state, stale = -np.inf, _snapshot(model), 0
    identity = fit_identity(model_name, config, data, seed)
    resumed = load_state(resume_path, identity) if resume_path is not None and resume_path.exists() else None
    first_epoch = 1
    if resumed is not None:
        model.load_state_dict(resumed.model)
        optimizer.load_state_dict(resumed.optimizer)
        model.restore_generators(resumed.model_rngs)
        generator.set_state(resumed.shuffle_rng)
        torch.set_rng_state(resumed.torch_rng)
        restore_numpy_rng(resumed.numpy_rng)
        best_auc, best_state, stale = resumed.best_auc, resumed.best_state, resumed.stale
        result.best_epoch, result.history = resumed.best_epoch, [EpochRecord(**r) for r in resumed.history]
        first_epoch = resumed.epoch

    def save(epoch: int, next_row: int, order: torch.Tensor | None, loss: float, batches: int, seconds: float) -> None:
        assert resume_path is not None
        save_state(
            resume_path,
            TrainingState(
                identity=identity,
                epoch=epoch,
                next_row=next_row,
                order=order,
                epoch_loss=loss,
                epoch_batches=batches,
                epoch_seconds=seconds,
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                shuffle_rng=generator.get_state(),
                torch_rng=torch.get_rng_state(),
                numpy_rng=numpy_rng_state(),
                model_rngs=model.generator_states(),
                best_auc=float(best_auc),
                best_state=best_state,
                best_epoch=result.best_epoch,
                stale=stale,
                history=[asdict(record) for record in result.history],
            ),
        )

    for epoch in range(first_epoch, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        if resumed is not None and resumed.order is not None:  # mid-epoch: the per-epoch hook's work is in the state
            order, first_row = resumed.order, resumed.next_row
            total, n_batches, carried = resumed.epoch_loss, resumed.epoch_batches, resumed.epoch_seconds
        else:
            model.on_epoch_start(epoch)
            order = torch.randperm(len(users), generator=generator)
            # equal shards (a few rows an epoch left out when the count does not divide), so every worker takes as
            # many steps as the others: a DDP step waits for all of them
            order = order[: len(order) - len(order) % parallel.world_size][parallel.rank :: parallel.world_size]
            first_row, total, n_batches, carried = 0, 0.0, 0, 0.0
        resumed, last_save = None, started
        for start in range(first_row, len(order), batch_size):
            index = order[start : start + batch_size]
            losses = step(users[index], items[index], labels[index])
            if isinstance(losses, tuple):  # an alternating schedule: each part computed after the previous step
                if parallel.world_size > 1:
                    raise ValueError(f"{model_name}: a loss of several steps cannot be trained data-parallel")
                total += sum(_minimise(optimizer, part()) for part in losses)
            else:
                total += _minimise(optimizer, losses)
            n_batches += 1
            if resume_path is not None and time.perf_counter() - last_save >= save_every_s:
                now = time.perf_counter()
                save(epoch, start + batch_size, order, total, n_batches, carried + now - started)
                last_save = time.perf_counter()
                started += last_save - now  # the save is not training time
        seconds = carried + time.perf_counter() - started
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
        if resume_path is not None and epoch < config.epochs:
            save(epoch + 1, 0, None, 0.0, 0, 0.0)
    if resume_path is not None:
        resume_path.unlink(missing_ok=True)
    model.load_state_dict(best_state)
    return _finish(result, data)
