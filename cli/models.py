"""``graphrec models``: register, list, show, verify, promote (gated), roll back and prune model versions."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from cli.context import console, settings_of
from cli.output import JsonFlag, WideFlag, number_column, print_json, print_table, text_column

if TYPE_CHECKING:
    from registry.versions import VersionDetails, VersionRow

# key metrics shown at the default width; --wide adds the rest of registry.versions.KEY_METRICS
DEFAULT_METRICS = ("test_auc", "test_auc/sparse", "test_recall_at_20", "test_recall_at_20/sparse")

app = typer.Typer(
    help="Register, list, show, promote, roll back and prune model versions (MLflow).", no_args_is_help=True
)


def _name(ctx: typer.Context, name: str | None) -> str:
    return name or settings_of(ctx).registered_model_name


@app.command("register")
def register_command(
    ctx: typer.Context, run_id: str, name: str | None = typer.Option(None, help="Registered model name.")
) -> None:
    """Register a training run's model as a new version and publish its serving features to Feast."""
    from registry.versions import register

    version = register(settings_of(ctx), run_id, _name(ctx, name))
    console.print(
        f"registered [bold]{version.name}[/bold] version {version.version} (features published and materialized)"
    )


def _header(metric: str) -> str:
    """``test_recall_at_20/sparse`` -> ``recall@20`` over ``sparse``: two header lines keep the column narrow."""
    return metric.removeprefix("test_").replace("_at_", "@").replace("/", "\n")


def _minute(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M}"


def versions_table(title: str, rows: list[VersionRow], wide: bool = False) -> Table:
    """Versions, newest first: version, aliases, model and key metrics fit 80 columns; ``wide`` adds F1, the feature
    service, the creation time and the run id."""
    from registry.versions import KEY_METRICS

    metrics = KEY_METRICS if wide else DEFAULT_METRICS
    columns = [number_column("version"), text_column("aliases"), text_column("model")]
    columns += [number_column(_header(metric)) for metric in metrics]
    if wide:
        columns += [text_column("feature service"), text_column("created (UTC)"), text_column("run")]
    table = Table(*columns, title=title)
    for row in rows:
        cells = [row.version, ", ".join(row.aliases), row.model]
        cells += [f"{row.metrics[m]:.4f}" if m in row.metrics else "" for m in metrics]
        if wide:
            cells += [row.feature_service, _minute(row.created), row.run_id]
        table.add_row(*cells)
    return table


@app.command("list")
def list_command(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="Registered model name."),
    wide: WideFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Versions with their aliases, model and key metrics overall and on the sparsest tercile (--wide: also F1,
    feature service, created, run)."""
    from registry.versions import list_versions

    name = _name(ctx, name)
    rows = list_versions(settings_of(ctx), name)
    if as_json:
        print_json({"name": name, "versions": rows})
        return
    print_table(console, versions_table(name, rows, wide), wide)


def _details_tables(details: VersionDetails, wide: bool) -> list[Table]:
    """Tags, test metrics and the audit trail (the gate's numbers only with ``wide``)."""
    tags = Table(text_column("tag"), text_column("value"), title="tags")
    for key, value in sorted(details.tags.items()):
        tags.add_row(key, value)
    metrics = Table(text_column("metric"), number_column("value"), title="run metrics")
    for key, value in details.metrics.items():
        metrics.add_row(key, f"{value:.4f}")
    columns = [
        text_column("when (UTC)"),
        text_column("alias"),
        text_column("move"),
        text_column("action"),
        text_column("who"),
        text_column("reason"),
    ]
    audit = Table(
        *columns,
        *([text_column("gate")] if wide else []),
        title="audit trail",
        caption=None if wide or not details.audit_trail else "gate numbers: --wide or --json",
    )
    for entry in details.audit_trail:
        when = _minute(datetime.fromisoformat(entry.when))
        cells = [
            when,
            entry.alias,
            f"{entry.from_version or '-'} -> {entry.to_version}",
            entry.action,
            entry.who,
            entry.reason,
        ]
        audit.add_row(*cells, *([json.dumps(entry.gate)] if wide else []))
    return [tags, metrics, audit]


@app.command("show")
def show_command(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="NAME, NAME@ALIAS or NAME/VERSION."),
    wide: WideFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """A version's tags, aliases, test metrics and the model's audit trail of alias moves."""
    from registry.versions import show

    details = show(settings_of(ctx), reference)
    if as_json:
        print_json(details)
        return
    aliases = ", ".join(details.aliases) or "-"
    console.print(f"[bold]{details.name}[/bold] version {details.version}  aliases: {aliases}")
    console.print(f"run {details.run_id}  source {details.source}  created {_minute(details.created)} UTC")
    for table in _details_tables(details, wide):
        print_table(console, table, wide)


@app.command("verify")
def verify_command(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="NAME, NAME@ALIAS or NAME/VERSION."),
    as_json: JsonFlag = False,
) -> None:
    """Check every file of a version against the SHA-256 recorded at its registration (run it before
    `mlflow models serve`, which executes the model's code); refused when any file differs."""
    from registry.versions import verify

    report = verify(settings_of(ctx), reference)
    if as_json:
        print_json(report)
        return
    console.print(
        f"models:/{report.name}/{report.version}: {report.files} files match their registered SHA-256; "
        f"its {report.scorer} scorer loads as plain data"
    )


@app.command("promote")
def promote_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model name."),
    version: str = typer.Argument(..., help="Version to promote."),
    alias: str = typer.Option("champion", help="Alias to move (champion or challenger)."),
    force: bool = typer.Option(False, help="Skip the metric gate (requires --reason)."),
    reason: str = typer.Option("", help="Why (recorded in the audit trail)."),
    tolerance: float = typer.Option(0.005, help="Allowed AUC drop versus the current champion."),
) -> None:
    """Move an alias to a version, through the gate: servable features, and no worse than the champion."""
    from registry.promotion import promote
    from registry.tracking import configure_mlflow

    settings = settings_of(ctx)
    configure_mlflow(settings)
    entry = promote(settings, name, version, alias, force, reason, tolerance)
    if entry is None:
        console.print(f"{alias}: version {version} already holds it; nothing changed, nothing recorded")
        return
    console.print(
        f"{alias}: {entry.from_version or '-'} -> {entry.to_version} ({entry.action}; gate {json.dumps(entry.gate)})"
    )


@app.command("rollback")
def rollback_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model name."),
    reason: str = typer.Option("rollback", help="Why (recorded in the audit trail)."),
) -> None:
    """Move champion back to the version it held before, as recorded in the audit trail."""
    from registry.promotion import rollback
    from registry.tracking import configure_mlflow

    settings = settings_of(ctx)
    configure_mlflow(settings)
    entry = rollback(settings, name, reason=reason)
    console.print(f"champion: {entry.from_version} -> {entry.to_version} (rollback)")


@app.command("prune")
def prune_command(
    ctx: typer.Context,
    keep: int = typer.Option(
        ..., "--keep", help="Keep this many newest versions (aliased versions and rollback targets are always kept)."
    ),
    name: str | None = typer.Option(None, help="Registered model name."),
) -> None:
    """Delete old versions with their per-version feature views and online features; never one that an alias
    holds or would roll back to. Says what it kept and why."""
    from registry.versions import prune

    report = prune(settings_of(ctx), _name(ctx, name), keep)
    console.print(f"deleted versions: {', '.join(report.deleted) or 'none'}")
    for version, why in report.kept.items():
        console.print(f"kept version {version}: {why}")
