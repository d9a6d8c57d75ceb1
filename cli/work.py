"""``graphrec work``: the work dir itself; ``relocate`` makes a copied or moved one use its own files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cli.context import CliError, console, settings_of
from cli.output import JsonFlag, number_column, print_json, text_column
from graphrec.relocation import Move, Rewrite, rewrite_text_file
from graphrec.settings import Settings

app = typer.Typer(help="The work dir: relocate a copied or moved one.", no_args_is_help=True)
STOCK_CONFIG = "feature_store.yaml"  # featurestore.config.STOCK_CONFIG, written by write_cli_config


def _state_files(settings: Settings) -> list[Path]:
    """The stores of graphrec state the work dir holds (the MLflow database, the Feast registry, offline data)."""
    candidates = [settings.mlflow_db_path, settings.feast_registry_path, settings.offline_dir]
    return [path for path in candidates if path.exists()]


def _former_location(settings: Settings, new: Path) -> Path | None:
    """The one other work dir the stored paths point into, None when they all point into ``new``."""
    from featurestore.config import feature_store
    from featurestore.relocation import stored_roots as feast_roots
    from registry.relocation import stored_roots as mlflow_roots

    roots = set()
    if settings.mlflow_db_path.exists():
        roots |= mlflow_roots(settings.mlflow_db_path)
    if settings.feast_registry_path.exists():
        roots |= feast_roots(feature_store(settings))
    roots.discard(new)
    if len(roots) > 1:
        found = ", ".join(sorted(map(str, roots)))
        raise CliError(f"stored paths point into several other work dirs ({found}): name the one with --from")
    return roots.pop() if roots else None


def _relocate(settings: Settings, move: Move) -> list[Rewrite]:
    """Rewrite every stored path under ``move.old``: MLflow database, Feast registry, the Feast CLI configuration
    (logged model artefacts stay as registered: registry/relocation.py)."""
    from featurestore.config import feature_store
    from featurestore.relocation import relocate_registry
    from registry.relocation import relocate_database

    work = move.new
    rewrites = []
    if settings.mlflow_db_path.exists():
        rewrites += relocate_database(settings.mlflow_db_path, move, work)
    if settings.feast_registry_path.exists():
        registry_file = str(settings.feast_registry_path.relative_to(work))
        rewrites += relocate_registry(feature_store(settings), move, registry_file)
    if (config := settings.work_dir / STOCK_CONFIG).exists() and (rewrite := rewrite_text_file(config, move, work)):
        rewrites.append(rewrite)
    return rewrites


@app.command("relocate")
def relocate(
    ctx: typer.Context,
    from_: Path | None = typer.Option(
        None, "--from", help="The old location (default: found in the stored paths).", show_default=False
    ),
    as_json: JsonFlag = False,
) -> None:
    """Rewrite the absolute paths MLflow and Feast stored under the work dir's old location (a copy's original, or
    where it was moved from) to point into this work dir. Safe to run again; stop the service first."""
    given = settings_of(ctx)
    new = given.work_dir.resolve()
    settings = given.model_copy(update={"work_dir": new})  # every path absolute, as the stores hold them
    if not new.is_dir() or not _state_files(settings):
        raise CliError(f"{given.work_dir} is not a graphrec work dir (no mlflow.db, feast_registry.db or offline/)")
    old = from_.resolve() if from_ is not None else _former_location(settings, new)
    if old is not None and old != new and new.is_relative_to(old):
        raise CliError(f"{new} is inside {old}: a work dir cannot be relocated into its own old location")
    rewrites = [] if old is None or old == new else _relocate(settings, Move(old, new))
    if as_json:
        print_json({"work_dir": str(new), "from": None if old is None else str(old), "rewrites": rewrites})
        return
    if not rewrites:
        console.print(f"nothing to rewrite: every stored path of {new} already points into it")
        return
    table = Table(text_column("file"), text_column("what"), number_column("values"), title=f"{old} -> {new}")
    for rewrite in rewrites:
        table.add_row(rewrite.file, rewrite.item, str(rewrite.count))
    console.print(table)
