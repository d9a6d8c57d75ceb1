"""Data-parallel training on Ray Train (issue 16): :func:`fit_distributed` runs the one training loop
(:func:`training.trainer.fit`) in ``workers`` processes of a ``TorchTrainer`` (gloo, CPU), each on its shard of every
epoch's rows, the gradients averaged by DistributedDataParallel (wrapped by Ray's ``prepare_model``).

Every worker builds the model from the same seed, so the weights start equal and stay equal (DDP averages the gradients
before each Adam step); each then reseeds with ``seed + rank`` so workers draw different negatives, TransH triples and
neighbour samples. Validation runs in every worker on the whole validation split and rank 0's AUC is broadcast, so early
stopping stops every worker at the same epoch. At the end the workers compare their weights (different shards leave them
equal only if the gradients were averaged) and the run fails if they differ. Rank 0 writes the restored best weights,
the history and the diagnostics as the run's checkpoint; the driver rebuilds the model from them, so the caller gets the
same :class:`~training.trainer.TrainResult` as from ``fit`` and logs, evaluates and exports it the same way.

Ray is joined through :func:`featurestore.ray_runtime.ray_connected` (``GRAPHREC_RAY_ADDRESS``, else a local Ray
bounded by ``GRAPHREC_RAY_NUM_CPUS`` / ``GRAPHREC_RAY_OBJECT_STORE_MB``); the training data travels once, through
the object store.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch

from featurestore.ray_runtime import RayTarget, ray_connected
from training.models.base import MODELS, ModelConfig, TrainingData, load_models
from training.trainer import (
    DataParallel,
    EpochRecord,
    TrainResult,
    fit,
    resolve_config,
    seed_everything,
    set_threads,
)

STATE_FILE, SUMMARY_FILE = "model.pt", "summary.json"


def _broadcast_from_rank_zero(value: float) -> float:
    """Rank 0's ``value`` in every worker (torch.distributed, the process group Ray Train set up)."""
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(tensor, src=0)
    return float(tensor)


def _weights_agree(model: torch.nn.Module, atol: float = 1e-6) -> bool:
    """Whether every worker holds the same weights (a per-parameter float64 sum, all-gathered): workers that train on
    different shards end equal only if DDP really averaged their gradients."""
    import torch.distributed as dist

    fingerprint = torch.stack([parameter.detach().double().sum() for parameter in model.parameters()])
    gathered = [torch.empty_like(fingerprint) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, fingerprint)
    return all(torch.allclose(other, gathered[0], rtol=0.0, atol=atol) for other in gathered)


def _wrap_ddp(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` under DDP through Ray Train. Buffers are not re-broadcast at every step (they are equal from the
    common seed and some are large: the CKG's triples); unused parameters are allowed (models differ in which of
    their parameters a given loss touches)."""
    from ray.train.torch import prepare_model

    return prepare_model(
        module,
        move_to_device=False,
        parallel_strategy_kwargs={"find_unused_parameters": True, "broadcast_buffers": False},
    )


def _worker_loop(loop: dict) -> None:
    """One Ray Train worker: ``fit`` on this rank's shard, an epoch report each epoch, rank 0's result checkpointed."""
    import ray
    import ray.train

    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    set_threads(loop["threads"])
    load_models()
    data: TrainingData = ray.get(loop["data"])
    config = MODELS[loop["model"]].Config.model_validate(loop["config"])
    parallel = DataParallel(rank, world_size, _wrap_ddp, _broadcast_from_rank_zero)
    result = fit(
        loop["model"],
        data,
        config,
        loop["seed"],
        on_epoch=lambda record: ray.train.report(asdict(record)),  # every worker reports: Ray Train's barrier
        parallel=parallel,
    )
    summary = {
        "history": [asdict(record) for record in result.history],
        "best_epoch": result.best_epoch,
        "diagnostics": result.diagnostics,
        "weights_agree": _weights_agree(result.model),
    }
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if rank == 0:
            torch.save(result.model.state_dict(), Path(folder) / STATE_FILE)
            (Path(folder) / SUMMARY_FILE).write_text(json.dumps(summary))
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report({"best_epoch": result.best_epoch}, checkpoint=checkpoint)


def fit_distributed(
    model_name: str,
    data: TrainingData,
    config: ModelConfig | None = None,
    seed: int = 0,
    workers: int = 2,
    target: RayTarget | None = None,
    threads: int = 1,
    storage: Path | None = None,
) -> TrainResult:
    """Train ``model_name`` like :func:`training.trainer.fit`, data-parallel over ``workers`` Ray Train workers (one
    CPU and ``threads`` torch threads each); ``storage`` holds Ray Train's run folder (default: a temporary one)."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    load_models()
    if model_name not in MODELS:
        raise KeyError(f"unknown model {model_name!r}; registered: {', '.join(sorted(MODELS))}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    config = resolve_config(model_name, config)
    if getattr(config, "transh_schedule", "joint") != "joint":
        raise ValueError(
            f"{model_name}: transh_schedule 'alternating' takes two steps a batch; train it with workers=1"
        )
    ray = ray_connected(target or RayTarget())
    loop = {
        "model": model_name,
        "data": ray.put(data),
        "config": config.model_dump(),
        "seed": seed,
        "threads": threads,
    }
    with tempfile.TemporaryDirectory() as scratch:
        trainer = TorchTrainer(
            _worker_loop,
            train_loop_config=loop,
            torch_config=TorchConfig(backend="gloo"),
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=False, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(name=f"graphrec-{model_name}", storage_path=str(storage or scratch)),
        )
        outcome = trainer.fit()
        if outcome.checkpoint is None:
            raise RuntimeError(f"Ray Train finished without rank 0's checkpoint: {outcome.error}")
        with outcome.checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / STATE_FILE, weights_only=True)
            summary = json.loads((Path(folder) / SUMMARY_FILE).read_text())
    if not summary["weights_agree"]:
        raise RuntimeError("the Ray Train workers ended with different weights: their gradients were not averaged")
    seed_everything(seed)  # the same construction as the workers' (seeded buffers, samplers)
    model = MODELS[model_name](config, data)
    model.load_state_dict(state)
    model.eval()
    return TrainResult(
        model=model,
        config=config,
        history=[EpochRecord(**record) for record in summary["history"]],
        best_epoch=summary["best_epoch"],
        diagnostics=summary["diagnostics"],
    )
