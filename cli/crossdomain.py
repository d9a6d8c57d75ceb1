"""``graphrec crossdomain``: write the two-domain synthetic set; evaluate CD-GNN against its baselines (issue 13)."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from cli.context import CliError, console, err_console, settings_of
from cli.output import JsonFlag, name_column, number_column, print_json

if TYPE_CHECKING:
    from graphrec.settings import Settings
    from training.crossdomain.report import Sweep
    from training.crossdomain.task import CrossDomainTask

app = typer.Typer(help="Cross-domain transfer: CD-GNN vs baselines on two domains (issue 13).", no_args_is_help=True)

AMAZON_DIRECTIONS = {"both": (0, 1), "cloth-sport": (1,), "sport-cloth": (0,)}
DEFAULT_MODELS = "popularity,lightgcn-target,gcn-merged,emcdr,cdgnn-noalign,cdgnn"


def _floats(text: str, option: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CliError(f"{option} takes comma-separated numbers, got {text!r}") from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise CliError(f"{option} takes shares in (0, 1], got {text!r}")
    return sorted(set(values))


def _synthetic_tasks(folder: Path, direction: str, keeps: list[float]) -> dict[float, CrossDomainTask]:
    """One task per kept share on a two-domain folder; ``direction`` is 'SOURCE-TARGET' by domain name."""
    from training.crossdomain.task import build_task
    from training.data.dataset import load_dataset_dir
    from training.synth.crossdomain import cross_domain_split

    dataset = load_dataset_dir(folder)
    names = [str(name) for name in dataset.domains[:2]]
    pairs = {f"{names[0]}-{names[1]}": 1, f"{names[1]}-{names[0]}": 0} if len(names) == 2 else {}
    if direction not in pairs:
        raise CliError(f"--direction for {folder} is one of {', '.join(pairs) or '(no two named domains)'}")
    target = pairs[direction]
    return {keep: build_task(dataset, cross_domain_split(dataset, target, keep), (target,)) for keep in keeps}


SYNTH_PREFIX = "synth:"


def _synthetic_folder(spec: str, work_dir: Path) -> Path:
    """``synth:USERS[:ITEMS[:SEED]]``: write the generator's two-domain set (items 2000 and seed 0 by default, as
    `crossdomain synth`) under the work dir, so the evaluate command alone rebuilds its data from a fresh clone."""
    from training.synth.crossdomain import cross_domain_config
    from training.synth.generator import generate_dataset

    parts = spec.removeprefix(SYNTH_PREFIX).split(":")
    try:
        users, items, seed = ([int(part) for part in parts] + [2000, 0][len(parts) - 1 :])[:3]
    except ValueError:
        users = items = seed = -1
    if len(parts) > 3 or users < 2 or items < 0 or seed < 0:
        raise CliError(f"--data {spec!r}: write synth:USERS, synth:USERS:ITEMS or synth:USERS:ITEMS:SEED")
    folder = work_dir / "crossdomain" / f"synth-u{users}-i{items}-s{seed}"
    generate_dataset(cross_domain_config(users, seed, items), folder)
    return folder


def _amazon_tasks(data_dir: Path, direction: str, keeps: list[float]) -> dict[float, CrossDomainTask]:
    from training.crossdomain.task import build_task
    from training.data.amazon import load_amazon

    if direction not in AMAZON_DIRECTIONS:
        raise CliError(f"--direction for amazon is one of {', '.join(AMAZON_DIRECTIONS)}")
    if keeps != [1.0]:
        raise CliError("the Amazon release is evaluated on its published split only: use --keep 1.0")
    dataset, split = load_amazon(data_dir)
    return {1.0: build_task(dataset, split, AMAZON_DIRECTIONS[direction])}


@app.command()
def synth(
    out: Path = typer.Option(..., help="Folder to write (replaced atomically)."),
    users: int = typer.Option(4000, min=2, help="Users."),
    items: int = typer.Option(2000, min=0, help="Items (0: users / 10, at least 200)."),
    seed: int = typer.Option(0, help="Generator seed."),
) -> None:
    """Write the synthetic funds/coupons set with half the users in both domains (docs/DATA_FORMAT.md)."""
    from training.synth.crossdomain import cross_domain_config
    from training.synth.generator import generate_dataset

    summary = generate_dataset(cross_domain_config(users, seed, items), out)
    console.print(f"wrote {out}: {summary.n_users:,} users, {summary.positives:,} positives in {summary.seconds:.1f}s")


@app.command()
def train(
    ctx: typer.Context,
    target: str = typer.Option(..., help="Target domain (its name in dataset.json, e.g. coupon) the version serves."),
    model: str = typer.Option("cdgnn", help="Cross-domain variant (cdgnn, cdgnn-coral, emcdr, ...)."),
    epochs: int = typer.Option(5, min=1, help="Training epochs (the best validation AUC is kept)."),
    seed: int | None = typer.Option(None, help="Split and model seed (default: settings seed)."),
    batch_size: int = typer.Option(8192, min=1, help="Training rows per step (both domains together)."),
    dim: int = typer.Option(32, min=1, help="Representation size."),
    register: bool = typer.Option(False, "--register", help="Register the version and publish its features to Feast."),
    json_output: JsonFlag = False,
) -> None:
    """Fit a cross-domain model for one target domain of the configured two-domain dataset (--dataset) on the
    platform's CTR split, log it to MLflow like every model and, with --register, register it under the settings'
    model name with its target domain fixed (tag graphrec.domain), ready for `graphrec models promote` and serving."""
    import torch

    from registry.crossdomain import train_and_log_domain
    from registry.tracking import configure_mlflow
    from training.crossdomain.model import VARIANTS

    if model not in VARIANTS:
        raise CliError(f"unknown cross-domain model {model!r}; choose from {', '.join(VARIANTS)}")
    settings = settings_of(ctx)
    configure_mlflow(settings)
    torch.set_num_threads(1)
    try:
        outcome = train_and_log_domain(
            settings, target, model, epochs, seed, register_version=register, batch_size=batch_size, dim=dim
        )
    except ValueError as error:  # an unknown domain, a dataset without two domains or without target rows
        raise CliError(str(error)) from None
    run, version = outcome.run, outcome.version
    if json_output:
        print_json(
            {
                "model": model,
                "target": target,
                "seed": run.seed,
                "best_epoch": run.best_epoch,
                "seconds_per_epoch": run.seconds_per_epoch,
                "valid": run.valid,
                "test": run.test,
                "run_id": outcome.run_id,
                "version": None if version is None else version.version,
            }
        )
        return
    columns = (name_column("metric"), number_column("validation"), number_column("test"))
    table = Table(*columns, title=f"{model} → {target}")
    for metric, value in run.test.items():
        table.add_row(metric, f"{run.valid.get(metric, float('nan')):.4f}", f"{value:.4f}")
    console.print(table)
    console.print(f"best epoch {run.best_epoch} of {epochs}; {run.seconds_per_epoch:.2f} s/epoch; run {outcome.run_id}")
    if version is not None:
        console.print(
            f"registered {version.name} version {version.version} (domain {target}); promote it with "
            f"`graphrec models promote {version.name} {version.version}`"
        )


def _generator(folder: Path) -> str:
    """The generating settings a synthetic folder records, so the report says how to rebuild its data."""
    meta = json.loads((folder / "dataset.json").read_text(encoding="utf-8-sig"))
    settings = meta.get("generator")
    return json.dumps(settings, sort_keys=True) if settings else "none recorded (not a generated set)"


def _log_sweep(
    settings: Settings,
    sweep: Sweep,
    out: Path,
    figure: Path | None,
    data: str,
    direction: str,
    seeds: int,
    epochs: int,
    models: list[str],
) -> str:
    from registry.crossdomain import log_sweep
    from registry.tracking import configure_mlflow

    configure_mlflow(settings)
    params = {"data": data, "direction": direction, "seeds": seeds, "epochs": epochs, "models": ",".join(models)}
    return log_sweep(settings, sweep, out, figure, params | {"negatives": sweep.n_negatives})


def _command_line() -> str:
    return "graphrec " + " ".join(shlex.quote(word) for word in sys.argv[1:])


@app.command()
def evaluate(
    ctx: typer.Context,
    data: str = typer.Option(
        "amazon",
        help="'amazon' (under GRAPHREC_DATA_DIR), a two-domain dataset folder, or synth:USERS[:ITEMS[:SEED]] (the "
        "generator's set, written under the work dir).",
    ),
    direction: str = typer.Option("both", help="amazon: both, cloth-sport, sport-cloth; a folder: SOURCE-TARGET."),
    keep: str = typer.Option("1.0", help="Shares of target training rows kept, comma-separated (folders only)."),
    seeds: int = typer.Option(1, min=1, help="Model seeds 0..N-1 per model and share."),
    epochs: int = typer.Option(5, min=1, help="Training epochs (test taken at the best validation MRR)."),
    models: str = typer.Option(DEFAULT_MODELS, help="Comma-separated models."),
    negatives: int = typer.Option(999, min=1, help="Sampled negatives per held-out row."),
    batch_size: int = typer.Option(8192, min=1, help="Training rows per step (both domains together)."),
    dim: int = typer.Option(32, min=1, help="Representation size."),
    out: Path = typer.Option(Path("results/crossdomain.md"), help="Markdown report; a PNG is written beside it."),
    log_mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log report, figure and metrics to MLflow."),
    json_output: JsonFlag = False,
) -> None:
    """Fit every model on every share and seed, rank the held-out rows, write the report (and the figure when there is
    more than one share), and log them with the mean test metrics to MLflow (experiment graphrec-crossdomain)."""
    import torch

    from training.crossdomain.experiment import MODEL_NAMES, eval_sets, run_model
    from training.crossdomain.report import Sweep, markdown, plot

    chosen = [name.strip() for name in models.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in MODEL_NAMES]
    if unknown or not chosen:
        raise CliError(f"unknown model(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(MODEL_NAMES)}")
    keeps = _floats(keep, "--keep")
    started = time.perf_counter()
    settings = settings_of(ctx)
    folder = _synthetic_folder(data, settings.work_dir) if data.startswith(SYNTH_PREFIX) else Path(data)
    if data == "amazon":
        tasks = _amazon_tasks(settings.data_dir, direction, keeps)
    else:
        tasks = _synthetic_tasks(folder, direction, keeps)
    torch.set_num_threads(1)
    runs = {}
    for share, task in tasks.items():
        sets = eval_sets(task, negatives, seed=0)
        runs[share] = []
        for name in chosen:
            for seed in range(seeds):
                err_console.print(f"share {share:g}: {name} seed {seed}", highlight=False)
                runs[share].append(run_model(task, sets, name, seed, epochs, batch_size=batch_size, dim=dim))
    notes = (
        f"Data: {next(iter(tasks.values())).name}; direction {direction}; {seeds} seed(s); {epochs} epochs; "
        f"batch {batch_size}; dim {dim}; 2 GNN layers; Adam lr 0.01.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs shared with other work, torch threads 1, "
        f"torch {torch.__version__}. Epoch counts are what this CPU allowed, not tuned budgets.",
    )
    if data != "amazon":
        notes += (f"Dataset folder settings (dataset.json `generator`): {_generator(folder)}.",)
    sweep = Sweep(runs, _command_line(), time.perf_counter() - started, notes, negatives)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure = out.with_suffix(".png") if len(runs) > 1 else None
    if figure is not None:
        plot(sweep, figure)
    out.write_text(markdown(sweep, "Cross-domain transfer: CD-GNN and baselines", figure) + "\n")
    run_id = _log_sweep(settings, sweep, out, figure, data, direction, seeds, epochs, chosen) if log_mlflow else None
    if json_output:
        print_json({"mlflow_run": run_id, "runs": {str(share): runs[share] for share in runs}})
        return
    table = Table(
        name_column("model"),
        name_column("target"),
        number_column("keep"),
        number_column("MRR"),
        number_column("HR@10"),
        number_column("AUC"),
        title=f"Test at best validation MRR ({out})",
    )
    for share, fits in runs.items():
        for fit in fits:
            for domain, result in fit.domains.items():
                test = result.test
                table.add_row(
                    fit.model, domain, f"{share:g}", f"{test['MRR']:.4f}", f"{test['HR@10']:.4f}", f"{test['AUC']:.4f}"
                )
    console.print(table)
    if run_id is not None:
        console.print(f"MLflow run {run_id} (experiment graphrec-crossdomain): report, figure and mean test metrics")
