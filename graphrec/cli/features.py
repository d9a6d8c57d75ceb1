"""``graphrec features``: build offline feature snapshots, apply Feast definitions, materialize, read, join."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from graphrec.cli.context import console, reported_errors, settings_of

app = typer.Typer(help="Build, apply, materialize and read graph features (Feast).", no_args_is_help=True)


def _parse_time(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO date/time such as 2011-05-01 or 2011-05-01T12:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp())


@app.command()
def build(
    ctx: typer.Context,
    only: Optional[list[str]] = typer.Option(None, help="Feature families to build (transh, graph_stats); default all."),
    as_of: Optional[str] = typer.Option(None, help="Build as of this time (ISO); default: the latest interaction."),
    epochs: Optional[int] = typer.Option(None, help="TransH epochs (default from the job config)."),
) -> None:
    """Compute feature families and write offline parquet snapshots (older snapshots are kept)."""
    from feature_repo.catalog import FAMILIES
    from registry.tracking import log_feature_build
    from training.features.jobs import FeatureJobConfig, build_features
    from training.features.transh_job import TransHJobConfig

    settings = settings_of(ctx)
    config = FeatureJobConfig()
    if epochs is not None:
        config = FeatureJobConfig(transh=TransHJobConfig(**(config.transh.model_dump() | {"epochs": epochs})))
    families = tuple(only) if only else FAMILIES
    with reported_errors(), Progress(
        TextColumn("TransH"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
        console=console, transient=True,
    ) as progress:
        task = progress.add_task("transh", total=config.transh.epochs, info="")

        def on_epoch(epoch: int, record: dict) -> None:
            info = f"loss {record['loss']:.4f}" + (f" valid MRR {record['valid_mrr']:.3f}" if "valid_mrr" in record else "")
            progress.update(task, completed=epoch, info=info)

        report = build_features(settings, families, _parse_time(as_of), config, on_epoch=on_epoch)
    table = Table("view", "rows", "snapshot", title=f"offline snapshots as of {report.as_of:%Y-%m-%d %H:%M} UTC")
    for name, path in report.written.items():
        table.add_row(name, f"{report.rows[name]:,}", path)
    console.print(table)
    if report.transh is not None:
        metrics = report.transh.test_metrics
        console.print(
            f"TransH held-out KG link prediction ({report.transh.n_test_triples} twin-free test triples, filtered, "
            f"both sides): MRR {metrics.get('mrr', float('nan')):.4f}, Hits@10 {metrics.get('hits@10', float('nan')):.4f}"
        )
    run_id = log_feature_build(settings, report, config)
    if run_id:
        console.print(f"logged to MLflow run {run_id}")
