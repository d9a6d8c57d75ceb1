"""``graphrec models``: register, list, show, promote (gated), roll back and prune model versions."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Optional

import typer
from rich.table import Table

from cli.context import console, err_console, settings_of

app = typer.Typer(help="Register, list, show, promote, roll back and prune model versions (MLflow).", no_args_is_help=True)


def _name(ctx: typer.Context, name: str | None) -> str:
    return name or settings_of(ctx).registered_model_name


@app.command("register")
def register_command(ctx: typer.Context, run_id: str, name: Optional[str] = typer.Option(None, help="Registered model name.")) -> None:
    """Register a training run's model as a new version and publish its serving features to Feast."""
    from registry.versions import register

    version = register(settings_of(ctx), run_id, _name(ctx, name))
    console.print(f"registered [bold]{version.name}[/bold] version {version.version} (features published and materialized)")


@app.command("list")
def list_command(ctx: typer.Context, name: Optional[str] = typer.Argument(None, help="Registered model name.")) -> None:
    """Table of versions: aliases, model, key metrics overall and on the sparsest tercile, feature service, created."""
    from registry.versions import KEY_METRICS, list_versions

    rows = list_versions(settings_of(ctx), _name(ctx, name))
    table = Table("version", "aliases", "model", *[m.replace("test_", "") for m in KEY_METRICS], "feature service", "created",
                  title=_name(ctx, name))
    for row in rows:
        created = datetime.fromtimestamp(row.created / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
        metrics = [f"{row.metrics[m]:.4f}" if m in row.metrics else "" for m in KEY_METRICS]
        table.add_row(row.version, ",".join(row.aliases), row.model, *metrics, row.feature_service, created)
    console.print(table)


@app.command("show")
def show_command(ctx: typer.Context, reference: str = typer.Argument(..., help="NAME, NAME@ALIAS or NAME/VERSION.")) -> None:
    """A version's tags, aliases, metrics and the model's audit trail of alias moves."""
    from registry.versions import show

    version, metrics, trail = show(settings_of(ctx), reference)
    console.print(f"[bold]{version.name}[/bold] version {version.version}  aliases: {', '.join(version.aliases) or '-'}")
    console.print(f"run {version.run_id}  source {version.source}")
    tags = Table("tag", "value", title="tags")
    for key, value in sorted(version.tags.items()):
        tags.add_row(key, value)
    console.print(tags)
    table = Table("metric", "value", title="run metrics")
    for key in sorted(k for k in metrics if k.startswith("test_")):
        table.add_row(key, f"{metrics[key]:.4f}")
    console.print(table)
    audit = Table("when", "who", "alias", "from", "to", "action", "reason", "gate", title="audit trail")
    for entry in trail:
        audit.add_row(entry.when, entry.who, entry.alias, entry.from_version or "-", entry.to_version, entry.action,
                      entry.reason, json.dumps(entry.gate))
    console.print(audit)


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
    from registry.promotion import PromotionRefused, promote
    from registry.tracking import configure_mlflow

    settings = settings_of(ctx)
    configure_mlflow(settings)
    try:
        entry = promote(settings, name, version, alias, force, reason, tolerance)
    except PromotionRefused as exc:
        err_console.print(f"[red]refused:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"{alias}: {entry.from_version or '-'} -> {entry.to_version} ({entry.action}; gate {json.dumps(entry.gate)})")


@app.command("rollback")
def rollback_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model name."),
    reason: str = typer.Option("rollback", help="Why (recorded in the audit trail)."),
) -> None:
    """Move champion back to the version it held before, as recorded in the audit trail."""
    from registry.promotion import PromotionRefused, rollback
    from registry.tracking import configure_mlflow

    settings = settings_of(ctx)
    configure_mlflow(settings)
    try:
        entry = rollback(settings, name, reason=reason)
    except PromotionRefused as exc:
        err_console.print(f"[red]refused:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"champion: {entry.from_version} -> {entry.to_version} (rollback)")


@app.command("prune")
def prune_command(
    ctx: typer.Context,
    keep: int = typer.Option(..., "--keep", help="Keep this many newest versions (aliased versions are always kept)."),
    name: Optional[str] = typer.Option(None, help="Registered model name."),
) -> None:
    """Delete old versions that hold no alias, with their per-version feature views and online features."""
    from registry.versions import prune

    deleted = prune(settings_of(ctx), _name(ctx, name), keep)
    console.print(f"deleted versions: {', '.join(deleted) or 'none'}")
