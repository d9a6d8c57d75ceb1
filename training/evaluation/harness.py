"""Fit-then-evaluate for models × seeds: the numbers behind ``graphrec train`` and ``graphrec evaluate``.

Each (model, regime, seed) gets the seed's split of the chosen protocol (CTR 6:2:2 rows or the top-K per-user 8:1:1
hold-out; so the spread over seeds covers split and initialisation), is trained by :func:`training.trainer.fit` (model
selection on validation only) and is then evaluated on the test split exactly once. A regime is the training loss
(``bce`` on labelled rows, ``bpr`` against sampled items) applied to every model that has one. An ablation is a model
run with one of its parts switched off (:attr:`training.models.base.Recommender.ablations`), beside the full model.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import multiprocessing
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from training.data.dataset import Dataset
from training.data.splits import Protocol
from training.evaluation.metrics import TOP_K, ctr_metrics, topk_metrics
from training.models.base import MODELS, ModelConfig, Recommender, TrainingData, load_models
from training.trainer import EpochRecord, fit, predict_rows, prepare_data, rows_as_tensors, set_threads
from training.tuning import regime_of, with_regime


@dataclass(frozen=True)
class RunResult:
    """One (model, seed) run: validation and test metrics, speed and the selected epoch."""

    model: str
    seed: int
    config: ModelConfig
    valid: dict[str, float]
    test: dict[str, float]
    seconds_per_epoch: float
    best_epoch: int
    epochs_run: int
    diagnostics: dict[str, float] = field(default_factory=dict)
    ablation: str | None = None  # the variant of ``model``: a part switched off (``no …``) or added (``with …``)
    seconds: float = math.nan  # the whole run: fit, then validation and test evaluation (wall clock)

    @property
    def label(self) -> str:
        """The model, and for a variant what it lacks or adds (``kcan w/o distillation``, ``kcan + intent
        topics``)."""
        return self.model if self.ablation is None else f"{self.model} {ablation_suffix(self.ablation)}"

    @property
    def regime(self) -> str:
        """The training loss of the run (``none`` for a model that learns nothing)."""
        return regime_of(self.config)

    def row(self) -> dict[str, object]:
        """Flat table row: ids (``model`` is the label, ``family`` the registered name), regime, speed (``run_seconds``:
        the whole run), ``valid_*`` metrics, test metrics and ``diag_*`` diagnostics."""
        return (
            {
                "model": self.label,
                "family": self.model,
                "ablation": self.ablation or "",
                "regime": self.regime,
                "config": config_digest(self.config),
                "seed": self.seed,
                "best_epoch": self.best_epoch,
                "epochs_run": self.epochs_run,
                "seconds_per_epoch": self.seconds_per_epoch,
                "run_seconds": self.seconds,
            }
            | {f"valid_{k}": v for k, v in self.valid.items()}
            | self.test
            | {f"diag_{k}": v for k, v in self.diagnostics.items()}
        )


def config_digest(config: ModelConfig) -> str:
    """A short digest of every field of ``config``: a finished run is reused only for exactly the same config."""
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]


def ablation_suffix(ablation: str) -> str:
    """How a variant is named in tables: ``no distillation`` → ``w/o distillation``, ``with intent topics`` →
    ``+ intent topics``."""
    if ablation.startswith("with "):
        return "+ " + ablation.removeprefix("with ")
    return "w/o " + ablation.removeprefix("no ")


def load_config(model_name: str, path: Path | None) -> ModelConfig:
    """The model's Config from a YAML mapping of field values (defaults for absent fields, or all when no path)."""
    load_models()
    config_class = MODELS[model_name].Config
    if path is None:
        return config_class()
    return config_class.model_validate(yaml.safe_load(Path(path).read_text()) or {})


def resolve_names(spec: str) -> list[str]:
    """Model names from ``all`` or a comma-separated list; unknown names raise KeyError."""
    registry = load_models()
    names = sorted(registry) if spec.strip() == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise KeyError(f"unknown model(s) {', '.join(unknown)}; registered: {', '.join(sorted(registry))}")
    return names


def evaluate_split(
    model: Recommender, data: TrainingData, rows: pd.DataFrame, n_users: int | None = 300, seed: int = 0
) -> dict[str, float]:
    """AUC/F1 on ``rows`` and Recall/NDCG@20 on its positives, overall and per tercile. Under the top-K protocol
    every user with a positive in ``rows`` is ranked (full catalogue, RecBole's setting), whatever ``n_users``."""
    n_users = None if data.split.protocol == "topk" else n_users
    users, items, labels = rows_as_tensors(rows)
    logits = predict_rows(model, users, items)
    ctr = ctr_metrics(labels.numpy(), logits, data.terciles[users.numpy()])
    return ctr | topk_metrics(model, data, rows, TOP_K, n_users, seed)


def run_model(
    name: str,
    data: TrainingData,
    seed: int,
    config: ModelConfig | None = None,
    n_users: int | None = 300,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> RunResult:
    """Fit ``name`` (selection on validation), then evaluate validation and, once, test."""
    started = time.perf_counter()
    result = fit(name, data, config, seed, on_epoch)
    valid = evaluate_split(result.model, data, data.split.valid, n_users, seed)
    test = evaluate_split(result.model, data, data.split.test, n_users, seed)
    return RunResult(
        name,
        seed,
        result.config,
        valid,
        test,
        result.seconds_per_epoch,
        result.best_epoch,
        len(result.history),
        result.diagnostics,
        seconds=time.perf_counter() - started,
    )


def run_configs(
    name: str, configs: Mapping[str | tuple[str, str], ModelConfig], regimes: Sequence[str] | None
) -> list[ModelConfig]:
    """The configs ``name`` runs with: ``configs[(name, regime)]`` or ``configs[name]`` (else its defaults) under each
    regime; once, unchanged, without regimes or for a model without a loss (popularity)."""
    base = configs.get(name) or load_config(name, None)
    if not regimes or "loss" not in type(base).model_fields:
        return [base]
    return [with_regime(configs.get((name, regime)) or base, regime) for regime in regimes]


@dataclass(frozen=True)
class RunSpec:
    """One run to make: a model under a config (an ablation is the full model's config with one part switched off)
    and a seed."""

    model: str
    config: ModelConfig
    seed: int
    ablation: str | None = None

    @property
    def key(self) -> RunKey:
        """What identifies the run's result: label, regime, seed and config digest (see :meth:`RunResult.row`)."""
        label = self.model if self.ablation is None else f"{self.model} {ablation_suffix(self.ablation)}"
        return (label, regime_of(self.config), self.seed, config_digest(self.config))


RunKey = tuple[str, str, int, str]


def row_key(row: Mapping[str, object]) -> RunKey:
    """The :attr:`RunSpec.key` of a finished run's row."""
    return (str(row["model"]), str(row["regime"]), int(row["seed"]), str(row["config"]))


def run_specs(
    names: Sequence[str],
    seeds: Sequence[int],
    configs: Mapping[str | tuple[str, str], ModelConfig],
    regimes: Sequence[str] | None,
    ablations: bool = False,
    extensions: bool = False,
) -> list[RunSpec]:
    """Every (seed, model, regime) run, in report order; with ``ablations``, each of a model's declared ablations
    (:attr:`Recommender.ablations`, named ``no …``) right after the full model, under the same config; with
    ``extensions``, likewise each of its declared extensions (:attr:`Recommender.extensions`, named ``with …``)."""
    registry = load_models()
    specs = []
    for seed in seeds:
        for name in names:
            model = registry[name]
            variants = {
                **(model.ablations if ablations else {}),
                **({f"with {part}": switches for part, switches in model.extensions.items()} if extensions else {}),
            }
            for config in run_configs(name, configs, regimes):
                specs.append(RunSpec(name, config, seed))
                for variant, switches in variants.items():
                    changed = type(config).model_validate(config.model_dump() | switches)
                    specs.append(RunSpec(name, changed, seed, variant))
    return specs


_WORKER_DATASET: Dataset | None = None  # a worker process's dataset, set once by _start_worker


def _start_worker(dataset: Dataset, threads: int) -> None:
    global _WORKER_DATASET
    _WORKER_DATASET = dataset
    set_threads(threads)


@functools.cache
def _worker_data(seed: int, protocol: Protocol) -> TrainingData:
    assert _WORKER_DATASET is not None, "worker started without a dataset"
    return prepare_data(_WORKER_DATASET, seed, protocol)


def _run_in_worker(spec: RunSpec, protocol: Protocol, n_users: int | None) -> RunResult:
    return run_spec(spec, _worker_data(spec.seed, protocol), n_users)


def run_spec(spec: RunSpec, data: TrainingData, n_users: int | None = 300) -> RunResult:
    """Make one planned run (see :func:`run_model`), labelled with its ablation."""
    result = run_model(spec.model, data, spec.seed, spec.config, n_users)
    return dataclasses.replace(result, ablation=spec.ablation)


def evaluate_models(
    names: Sequence[str],
    seeds: Sequence[int],
    dataset: Dataset,
    configs: Mapping[str | tuple[str, str], ModelConfig] | None = None,
    n_users: int | None = 300,
    on_run: Callable[[RunResult], None] | None = None,
    regimes: Sequence[str] | None = None,
    protocol: Protocol = "ctr",
    ablations: bool = False,
    jobs: int = 1,
    threads: int = 1,
    finished: Mapping[RunKey, Mapping[str, object]] | None = None,
    extensions: bool = False,
) -> pd.DataFrame:
    """Fit and test every model under every regime (default: each model's own) for every seed, and with ``ablations`` /
    ``extensions`` each model's ablations / extensions; one row per run (see :meth:`RunResult.row`), in plan order.
    ``configs`` maps a (model, regime) pair, or else a model, to its config. ``jobs`` > 1 spreads the runs over that
    many worker processes of ``threads`` torch threads each (each run is seeded, so its numbers do not depend on
    ``jobs``). ``finished`` holds rows of runs already made (by :func:`row_key`): a planned run found there is not
    run again."""
    specs = run_specs(names, seeds, configs or {}, regimes, ablations, extensions)
    rows: dict[int, Mapping[str, object]] = {
        i: finished[spec.key] for i, spec in enumerate(specs) if finished and spec.key in finished
    }
    pending = [(i, spec) for i, spec in enumerate(specs) if i not in rows]
    if jobs <= 1:
        data_by_seed: dict[int, TrainingData] = {}
        for i, spec in pending:
            if spec.seed not in data_by_seed:
                data_by_seed = {spec.seed: prepare_data(dataset, spec.seed, protocol)}  # one split in memory
            result = run_spec(spec, data_by_seed[spec.seed], n_users)
            rows[i] = result.row()
            if on_run is not None:
                on_run(result)
        return pd.DataFrame([rows[i] for i in range(len(specs))])
    # Processes, not threads: the models hold the GIL in Python-level training loops. "spawn" because forking a
    # process whose torch has started OpenMP threads can deadlock the child.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, context, initializer=_start_worker, initargs=(dataset, threads)) as pool:
        futures = {pool.submit(_run_in_worker, spec, protocol, n_users): i for i, spec in pending}
        for future in as_completed(futures):
            result = future.result()
            rows[futures[future]] = result.row()
            if on_run is not None:
                on_run(result)
    return pd.DataFrame([rows[i] for i in range(len(specs))])


def run_label(model: str, regime: str) -> str:
    """A report row's name: the model and, when it has one, its regime (``bpr_mf (bpr)``)."""
    return model if regime == "none" else f"{model} ({regime})"


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of every numeric column, per model and regime (columns ``<name>_mean`` /
    ``<name>_std``, index :func:`run_label`)."""
    regimes = table["regime"] if "regime" in table else ["none"] * len(table)
    labels = [run_label(m, r) for m, r in zip(table["model"], regimes, strict=True)]
    labels_only = ["seed", "model", "family", "ablation", "regime", "config", "dataset"]
    numeric = table.drop(columns=labels_only, errors="ignore").groupby(pd.Index(labels), sort=False)
    mean, std = numeric.mean(), numeric.std(ddof=0).fillna(0.0)
    return pd.concat([mean.add_suffix("_mean"), std.add_suffix("_std")], axis=1)
