"""``graphrec train`` (one model, one seed), ``graphrec evaluate`` (models × regimes × seeds → RESULTS.md + PNG) and
``graphrec tune`` (an equal-budget Optuna study per model on validation AUC → training/models/tuned/)."""

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
    from graphrec.settings import Settings
    from training.data.dataset import Dataset
    from training.evaluation.harness import RunResult
    from training.evaluation.runs import RunLog
    from training.models.base import ModelConfig
    from training.trainer import EpochRecord
    from training.tuning import StudyRecord, Tuned

PROTOCOL_HELP = "Split protocol: ctr (6:2:2 labelled rows) or topk (per-user 8:1:1 hold-out, full-catalogue ranking)."
NO_TUNED_HELP = "Ignore tuned configs (use defaults or --config)."
TUNED_DIR_HELP = "Folder of tuned MODEL.REGIME.yaml configs (default: training/models/tuned/)."


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


def _protocol(value: str) -> str:
    """``--protocol`` callback: one of the split protocols."""
    from training.data.splits import PROTOCOLS

    if value not in PROTOCOLS:
        raise typer.BadParameter(f"unknown protocol {value!r}; choose from {', '.join(PROTOCOLS)}")
    return value


def _regimes(spec: str | None) -> str | None:
    """``--regimes`` callback: a comma-separated list of training losses (bce, bpr)."""
    from typing import get_args

    from training.models.bpr_mf import LossKind

    allowed = get_args(LossKind)
    if spec is not None and (unknown := [r for r in _names(spec) if r not in allowed]):
        raise typer.BadParameter(f"unknown regime(s) {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return spec


def _regime(value: str | None) -> str | None:
    """``--regime`` callback: one training loss (bce, bpr)."""
    if value is not None and len(_names(_regimes(value) or "")) != 1:
        raise typer.BadParameter(f"one regime expected, got {value!r}")
    return value


def _names(spec: str) -> list[str]:
    """The non-empty items of a comma-separated list."""
    return [name.strip() for name in spec.split(",") if name.strip()]


def _tuned(name: str, dataset: str, regime: str | None, directory: Path | None) -> Tuned | None:
    """The tuned config of ``name`` on ``dataset`` under ``regime`` (default: its own), or None; a malformed file is
    an error naming it."""
    import yaml
    from pydantic import ValidationError

    from training.tuning import TUNED_DIR, default_regime, load_tuned, tuned_path

    directory = directory or TUNED_DIR
    try:
        return load_tuned(name, dataset, regime, directory)
    except (yaml.YAMLError, ValidationError) as exc:
        message = yaml_message(exc) if isinstance(exc, yaml.YAMLError) else validation_message(exc)
        raise CliError(f"{tuned_path(name, regime or default_regime(name), directory)}: {message}") from exc


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
    protocol: str = typer.Option("ctr", "--protocol", callback=_protocol, help=PROTOCOL_HELP),
    no_tuned: bool = typer.Option(False, "--no-tuned", help=NO_TUNED_HELP),
    tuned_dir: Path | None = typer.Option(None, "--tuned-dir", help=TUNED_DIR_HELP),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        help="Data-parallel Ray Train workers (CPU, gloo); >1 joins GRAPHREC_RAY_ADDRESS or starts a local Ray.",
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Keep the fit's state in the work folder (every epoch and 10 minutes) and continue from it when "
        "one is there: rerun the same command after a crash.",
    ),
    as_json: JsonFlag = False,
) -> None:
    """Train one model (early stopping on validation), print validation and test metrics overall and by tercile and
    the model's diagnostics (how personal its rankings are, whether its attention selects), and log the run to MLflow
    (config, curves, metrics, diagnostics as diag_*, lineage, plots, model card, pyfunc). The config is --config,
    else the model's tuned config for this dataset (training/models/tuned/, by `graphrec tune`), else its defaults.
    With --workers N the fit runs data-parallel on Ray Train and the epochs are printed when it ends. With --resume a
    killed fit continues where it stopped (one process; not with --workers)."""
    from featurestore.ray_runtime import RayUnavailable
    from registry.tracking import configure_mlflow
    from registry.train import resume_path, train_and_log
    from training.data.load import load_dataset
    from training.resume import ResumeError
    from training.tuning import TUNED_DIR, default_regime, tuned_path

    settings = settings_of(ctx)
    if resume and workers > 1:
        raise typer.BadParameter(
            "a resumable fit runs in one process; drop --workers or --resume", param_hint="--resume"
        )
    _set_threads(threads)
    candidate = tuned_path(model, default_regime(model), tuned_dir or TUNED_DIR)
    use_tuned = config is None and not no_tuned and candidate.exists()  # else skip loading the dataset for its name
    tuned = _tuned(model, load_dataset(settings).name, None, tuned_dir) if use_tuned else None
    model_config = tuned.config if tuned is not None else _model_config(model, config)
    configure_mlflow(settings)
    notes = err_console if as_json else console
    source = f"tuned config {tuned.path.name}" if tuned is not None else (str(config) if config else "defaults")
    notes.print(
        f"[bold]{model}[/bold] on {settings.dataset} ({protocol} split), seed "
        f"{seed if seed is not None else settings.seed}, {source}: {model_config.model_dump()}"
    )

    def progress(record: EpochRecord) -> None:
        notes.print(
            f"epoch {record.epoch:3d}  loss {record.train_loss:.4f}  valid AUC {record.valid_auc:.4f}  "
            f"F1 {record.valid_f1:.4f}  {record.seconds:.2f} s"
        )

    state = resume_path(settings, model, protocol, seed if seed is not None else settings.seed)
    if resume and state.exists():
        notes.print(f"continuing the unfinished fit saved in {state}")
    try:
        outcome = train_and_log(
            settings,
            model,
            model_config,
            seed,
            register_version=register,
            on_epoch=progress,
            protocol=protocol,
            workers=workers,
            resume=resume,
        )
    except ResumeError as exc:  # a state file from another fit, or a damaged one: named, left in place
        raise CliError(str(exc)) from None
    except (ValueError, RayUnavailable) as exc:  # a config that cannot run data-parallel, or no Ray to join
        if workers == 1:
            raise
        raise CliError(str(exc)) from None
    run = outcome.run
    if as_json:
        print_json(
            {
                "model": model,
                "seed": run.seed,
                "protocol": protocol,
                "config_source": source,
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
    regimes: str | None = typer.Option(
        None,
        "--regimes",
        callback=_regimes,
        help="Training losses to run each model under, e.g. bce,bpr (default: each model's own).",
    ),
    protocol: str = typer.Option("ctr", "--protocol", callback=_protocol, help=PROTOCOL_HELP),
    no_tuned: bool = typer.Option(False, "--no-tuned", help=NO_TUNED_HELP),
    tuned_dir: Path | None = typer.Option(None, "--tuned-dir", help=TUNED_DIR_HELP),
    datasets: str | None = typer.Option(
        None,
        "--datasets",
        help="Comma-separated datasets ('lastfm' or dataset folders), one report section each (default: the "
        "configured dataset).",
    ),
    ablations: str | None = typer.Option(
        None,
        "--ablations",
        help="Also run each model's ablations (KCAN: its three) beside the full model on these datasets: 'all' or "
        "comma-separated dataset names.",
    ),
    extensions: str | None = typer.Option(
        None,
        "--extensions",
        help="Also run each model with its optional parts added (KCAN, BPR-MF: intent topics as a user side feature),"
        " paired with the full model, on these datasets: 'all' or comma-separated dataset names.",
    ),
    jobs: int = typer.Option(
        1, "--jobs", min=1, help="Runs in parallel, each in its own process with --threads threads (default 1)."
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Reuse the runs already recorded in the runs file next to the report (same dataset, model, regime, seed "
        "and config) instead of starting over.",
    ),
) -> None:
    """Fit and test every model under each regime for every seed; write RESULTS.md (mean ± std, one row per model
    and regime, the tuning budget of tuned configs, a section per dataset) and the tercile plots. A model's config:
    --config-dir's NAME.yaml, else its tuned config for the dataset and regime (training/models/tuned/), else its
    defaults. Every finished run is appended to RESULTS.runs.jsonl (next to --out) as it completes."""
    import pandas as pd

    from training.evaluation.harness import evaluate_models, resolve_names
    from training.evaluation.report import write_report
    from training.evaluation.runs import RunLog

    settings = settings_of(ctx)
    _set_threads(threads)
    started = time.perf_counter()
    names = resolve_names(models)
    tables, tuned_studies = [], {}
    loaded = _load_datasets(settings, datasets)
    ablated = _chosen_datasets("--ablations", ablations, [d.name for d in loaded])
    extended = _chosen_datasets("--extensions", extensions, [d.name for d in loaded])
    try:
        log = RunLog.open(out, resume)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if log.reused:
        console.print(
            f"{log.reused} recorded run(s) in {log.path}: those of the same dataset, model, regime, seed and config"
            " are reused"
        )
    for dataset in loaded:
        configs, studies = _evaluation_configs(names, dataset.name, regimes, config_dir, no_tuned, tuned_dir)
        tuned_studies |= studies
        with_ablations, with_extensions = dataset.name in ablated, dataset.name in extended
        variants = " and ".join(["ablations"] * with_ablations + ["extensions"] * with_extensions)
        console.print(f"[bold]{dataset.name}[/bold]: {', '.join(names)}" + (f" with {variants}" if variants else ""))
        table = evaluate_models(
            names,
            [settings.seed + i for i in range(seeds)],
            dataset,
            configs,
            on_run=lambda r, name=dataset.name: _finished(log, name, r),
            regimes=_names(regimes) if regimes else None,
            protocol=protocol,
            ablations=with_ablations,
            jobs=jobs,
            threads=threads or 1,
            finished=log.finished(dataset.name),
            extensions=with_extensions,
        )
        tables.append(table.assign(dataset=dataset.name) if datasets else table)
    command = "graphrec " + shlex.join(sys.argv[1:])
    table = pd.concat(tables, ignore_index=True)
    wall = time.perf_counter() - started
    given = {name: str(path) for name in names if (path := _given_config(config_dir, name))}
    report, plots = write_report(table, command, wall, out, protocol, tuned_studies, log.reuse(table), given)
    console.print(f"wrote {report} and {', '.join(map(str, plots))}")


def _finished(log: RunLog, dataset: str, run: RunResult) -> None:
    """Record a finished run in the runs file and print its headline."""
    log.append(dataset, run.row())
    console.print(
        f"{run.label} ({run.regime}) seed {run.seed}: test AUC {run.test['auc']:.4f} "
        f"Recall@20 {run.test['recall@20']:.4f} ({run.seconds_per_epoch:.2f} s/epoch, best epoch {run.best_epoch})"
    )


def _load_datasets(settings: Settings, spec: str | None) -> list[Dataset]:
    """The datasets of ``--datasets`` (each 'lastfm' or a folder), else the configured one; names must differ, since
    a report section and a tuned config are keyed by the dataset's name."""
    from training.data.load import load_dataset

    specs = _names(spec) if spec else [settings.dataset]
    loaded = [load_dataset(settings.model_copy(update={"dataset": s})) for s in specs]
    names = [d.name for d in loaded]
    if len(set(names)) != len(names):
        raise CliError(f"--datasets {spec}: two datasets share a name ({', '.join(names)}); give each its own name")
    return loaded


def _chosen_datasets(option: str, spec: str | None, names: list[str]) -> set[str]:
    """The dataset names ``option`` (--ablations, --extensions) selects ('all' or names among those evaluated)."""
    if not spec:
        return set()
    if spec.strip() == "all":
        return set(names)
    chosen = set(_names(spec))
    if unknown := chosen - set(names):
        raise CliError(
            f"{option} {spec}: {', '.join(sorted(unknown))} not evaluated here (datasets: {', '.join(names)})"
        )
    return chosen


def _given_config(config_dir: Path | None, name: str) -> Path | None:
    """--config-dir's NAME.yaml for model ``name``, when there is one."""
    path = config_dir / f"{name}.yaml" if config_dir else None
    return path if path is not None and path.exists() else None


def _evaluation_configs(
    names: list[str],
    dataset: str,
    regimes: str | None,
    config_dir: Path | None,
    no_tuned: bool,
    tuned_dir: Path | None,
) -> tuple[dict[str | tuple[str, str], ModelConfig], dict[tuple[str, str], StudyRecord]]:
    """Each model's config for ``dataset``: --config-dir's NAME.yaml, else its tuned config per regime (tuned on this
    dataset), else none (defaults); and the studies behind the tuned ones, by (dataset, report row label)."""
    from training.evaluation.harness import run_label
    from training.tuning import default_regime

    configs: dict[str | tuple[str, str], ModelConfig] = {}
    studies = {}
    for name in names:
        if path := _given_config(config_dir, name):
            configs[name] = _model_config(name, path)
            continue
        own = default_regime(name)
        for regime in _names(regimes) if regimes and own != "none" else [own]:
            tuned = None if no_tuned else _tuned(name, dataset, regime, tuned_dir)
            if tuned is not None:
                configs[(name, regime) if regimes else name] = tuned.config
                studies[(dataset, run_label(name, regime))] = tuned.study
    return configs, studies


def tune(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", callback=_one_model, help="Registered model name (e.g. kcan, bpr_mf)."),
    trials: int = typer.Option(30, "--trials", min=1, help="Trials of the study: the budget, equal for every model."),
    seed: int | None = typer.Option(None, "--seed", help="Split, sampler and training seed (default: settings seed)."),
    timeout: float | None = typer.Option(None, "--timeout", min=1, help="Stop starting trials after this many s."),
    epochs: int = typer.Option(30, "--epochs", min=1, help="Epoch cap of every trial (the same for every model)."),
    patience: int = typer.Option(5, "--patience", min=1, help="Early-stopping patience of every trial."),
    regime: str | None = typer.Option(
        None, "--regime", callback=_regime, help="Training loss, bce or bpr (default: the model's own)."
    ),
    protocol: str = typer.Option("ctr", "--protocol", callback=_protocol, help=PROTOCOL_HELP),
    tuned_dir: Path | None = typer.Option(None, "--tuned-dir", help=TUNED_DIR_HELP),
    threads: int | None = typer.Option(
        None, "--threads", help="torch and DGL CPU threads (1 is fastest on a busy CPU)."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="YAML of the model's config: the values of the fields the search leaves alone."
    ),
    as_json: JsonFlag = False,
) -> None:
    """Tune one model: a seeded Optuna TPE study over its declared search space (training/models/search_spaces.yaml)
    maximising validation AUC (the test split is never read), tracked in MLflow (a parent run, a nested run per
    trial); the best config is written where train and evaluate pick it up. Fields outside the space keep --config's
    values (recorded with the study), else the model's defaults."""
    from registry.tracking import configure_mlflow
    from registry.tuning import tune_and_log
    from training.tuning import TUNED_DIR, TrialOutcome, search_space

    settings = settings_of(ctx)
    _set_threads(threads)
    try:
        search_space(model)
    except KeyError as exc:
        raise CliError(str(exc.args[0])) from exc
    base = None if config is None else _model_config(model, config)
    configure_mlflow(settings)
    notes = err_console if as_json else console
    notes.print(
        f"[bold]tuning {model}[/bold] on {settings.dataset} ({protocol} split): {trials} trial(s), "
        f"epochs ≤ {epochs}, patience {patience}" + (f", other fields from {config}" if config else "")
    )
    best = [float("-inf")]

    def progress(outcome: TrialOutcome) -> None:
        best[0] = max(best[0], outcome.valid_auc)
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in outcome.params.items())
        notes.print(
            f"trial {outcome.number + 1}/{trials}  valid AUC {outcome.valid_auc:.4f}  best {best[0]:.4f}  "
            f"epoch {outcome.best_epoch}/{len(outcome.history)}  {outcome.seconds:.0f} s\n  {params}"
        )

    outcome = tune_and_log(
        settings,
        model,
        trials,
        seed,
        timeout,
        epochs,
        patience,
        regime.strip() if regime else None,
        protocol,
        tuned_dir or TUNED_DIR,
        progress,
        base=base,
        base_path=config,
    )
    if as_json:
        print_json(
            {
                "study": outcome.record.model_dump(),
                "best_params": outcome.best_params,
                "path": str(outcome.path),
                "run_id": outcome.run_id,
            }
        )
        return
    record = outcome.record
    console.print(
        f"best trial {record.best_trial + 1} of {record.n_trials}: valid AUC {record.best_valid_auc:.4f}\n"
        f"wrote {outcome.path}\nMLflow run {outcome.run_id}"
    )
