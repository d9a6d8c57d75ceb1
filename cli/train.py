"""``graphrec train`` (one model, one seed) and ``graphrec evaluate`` (models × seeds → RESULTS.md + PNG)."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Column, Table

from cli.context import CliError, console, err_console, settings_of, validation_message, yaml_message
from cli.output import JsonFlag, number_column, print_json

if TYPE_CHECKING:
    from training.models.base import ModelConfig
    from training.trainer import EpochRecord


def _metrics_table(title: str, columns: dict[str, dict[str, float]]) -> Table:
    """Metric rows (overall, then per tercile) × one column per split."""
    metric = Column("metric", style="bold", overflow="fold")
    table = Table(metric, *(number_column(name) for name in columns), title=title)
    for metric in next(iter(columns.values())):
        table.add_row(metric, *(f"{values[metric]:.4f}" for values in columns.values()))
    return table


def _diagnostics_table(title: str, diagnostics: dict[str, float]) -> Table:
    """One row per diagnostic (``group/name`` keys, as logged to MLflow with the ``diag_`` prefix)."""
    table = Table(Column("diagnostic", style="bold", overflow="fold"), number_column("value"), title=title)
    for key, value in diagnostics.items():
        table.add_row(key, f"{value:.4f}")
    return table


def _unknown_models(names: list[str]) -> None:
    """A usage error of the option being parsed (``Invalid value for '--model'``) naming the registered models,
    when any of ``names`` is not one."""
    from training.models.base import load_models

    registered = sorted(load_models())
    if unknown := [name for name in names if name not in registered]:
        raise typer.BadParameter(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(registered)}")


def _one_model(name: str) -> str:
    """``--model`` callback: one registered model name."""
    _unknown_models([name])
    return name


def _model_list(spec: str) -> str:
    """``--models`` callback: 'all' or a comma-separated list of registered model names."""
    if spec.strip() != "all":
        _unknown_models([name.strip() for name in spec.split(",") if name.strip()])
    return spec


def _model_config(name: str, path: Path | None) -> ModelConfig:
    """The model's config from a YAML file; a malformed file or a bad field is an error naming the file."""
    import yaml
    from pydantic import ValidationError

    from training.evaluation.harness import load_config

    try:
        return load_config(name, path)
    except yaml.YAMLError as exc:
        raise CliError(f"{path}: {yaml_message(exc)}") from exc
    except ValidationError as exc:
        raise CliError(f"{path}: {validation_message(exc)}") from exc


def _set_threads(threads: int | None) -> None:
    """Set torch's and DGL's CPU thread counts when asked (small models run faster single-threaded on a busy CPU)."""
    if threads is not None:
        from training.trainer import set_threads

        set_threads(threads)


def train(
    ctx: typer.Context,
    model: str = typer.Option(
        ..., "--model", callback=_one_model, help="Registered model name (e.g. kcan, kgat, bpr_mf)."
    ),
    config: Path | None = typer.Option(None, "--config", help="YAML file of the model's config fields."),
    seed: int | None = typer.Option(None, "--seed", help="Split and training seed (default: settings seed)."),
    threads: int | None = typer.Option(
        None, "--threads", help="torch and DGL CPU threads (1 is fastest on a busy CPU)."
    ),
    register: bool = typer.Option(False, "--register", help="Register the model and publish its features to Feast."),
    as_json: JsonFlag = False,
) -> None:
    """Train one model (early stopping on validation), print validation and test metrics overall and by tercile and
    the model's diagnostics (how personal its rankings are, whether its attention selects), and log the run to MLflow
    (config, curves, metrics, diagnostics as diag_*, lineage, plots, model card, pyfunc)."""
    from registry.tracking import configure_mlflow
    from registry.train import train_and_log

    settings = settings_of(ctx)
    _set_threads(threads)
    model_config = _model_config(model, config)
    configure_mlflow(settings)
    notes = err_console if as_json else console
    notes.print(
        f"[bold]{model}[/bold] on {settings.dataset}, seed {seed if seed is not None else settings.seed}: "
        f"{model_config.model_dump()}"
    )

    def progress(record: EpochRecord) -> None:
        notes.print(
            f"epoch {record.epoch:3d}  loss {record.train_loss:.4f}  valid AUC {record.valid_auc:.4f}  "
            f"F1 {record.valid_f1:.4f}  {record.seconds:.2f} s"
        )

    outcome = train_and_log(settings, model, model_config, seed, register_version=register, on_epoch=progress)
    run = outcome.run
    if as_json:
        print_json(
            {
                "model": model,
                "seed": run.seed,
                "config": run.config,
                "best_epoch": run.best_epoch,
                "epochs_run": len(run.history),
                "seconds_per_epoch": run.seconds_per_epoch,
                "valid": run.valid,
                "test": run.test,
                "diagnostics": run.diagnostics,
                "run_id": outcome.run_id,
                "version": None if outcome.version is None else outcome.version.version,
            }
        )
        return
    if run.history:
        console.print(
            f"best epoch {run.best_epoch} of {len(run.history)}; {run.seconds_per_epoch:.2f} s/epoch (median)"
        )
    else:
        console.print("no epochs: the model has no parameters to train")
    console.print(_metrics_table(f"{model} (seed {run.seed})", {"validation": run.valid, "test": run.test}))
    if run.diagnostics:
        console.print(_diagnostics_table(f"{model} diagnostics", run.diagnostics))
    console.print(f"MLflow run {outcome.run_id}")
    if outcome.version is not None:
        console.print(
            f"registered {outcome.version.name} version {outcome.version.version}; promote it with "
            f"`graphrec models promote {outcome.version.name} {outcome.version.version}`"
        )


def evaluate(
    ctx: typer.Context,
    models: str = typer.Option(
        "all", "--models", callback=_model_list, help="'all' or a comma-separated list of model names."
    ),
    seeds: int = typer.Option(3, "--seeds", help="Number of seeds (settings seed, +1, +2, ...)."),
    out: Path = typer.Option(Path("RESULTS.md"), "--out", help="Markdown report; the PNG is written next to it."),
    config_dir: Path | None = typer.Option(
        None, "--config-dir", help="Folder of NAME.yaml configs; models without one use their defaults."
    ),
    threads: int | None = typer.Option(
        None, "--threads", help="torch and DGL CPU threads (1 is fastest on a busy CPU)."
    ),
) -> None:
    """Fit and test every model for every seed; write RESULTS.md (mean ± std) and results_by_tercile.png."""
    from training.data.load import load_dataset
    from training.evaluation.harness import evaluate_models, resolve_names
    from training.evaluation.report import write_report

    settings = settings_of(ctx)
    _set_threads(threads)
    started = time.perf_counter()
    dataset = load_dataset(settings)
    names = resolve_names(models)
    configs = {
        n: _model_config(n, config_dir / f"{n}.yaml" if config_dir and (config_dir / f"{n}.yaml").exists() else None)
        for n in names
    }
    table = evaluate_models(
        names,
        [settings.seed + i for i in range(seeds)],
        dataset,
        configs,
        on_run=lambda r: console.print(
            f"{r.model} seed {r.seed}: test AUC {r.test['auc']:.4f} F1 {r.test['f1']:.4f} "
            f"Recall@20 {r.test['recall@20']:.4f} ({r.seconds_per_epoch:.2f} s/epoch, best epoch {r.best_epoch})"
        ),
    )
    command = "graphrec " + shlex.join(sys.argv[1:])
    report, plot = write_report(table, command, time.perf_counter() - started, out)
    console.print(f"wrote {report} and {plot}")
