"""``graphrec features``: build offline feature snapshots, apply Feast definitions, materialize, read, join."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.context import CliError, console, settings_of
from cli.output import JsonFlag, name_column, number_column, print_json, text_column

if TYPE_CHECKING:
    from graphrec.settings import Settings

app = typer.Typer(help="Build, apply, materialize and read graph features (Feast).", no_args_is_help=True)


def _parse_time(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO date/time such as 2011-05-01 or 2011-05-01T12:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


@app.command()
def build(
    ctx: typer.Context,
    only: list[str] | None = typer.Option(
        None, help="Feature families to build (transh, graph_stats, intent); default all."
    ),
    as_of: str | None = typer.Option(None, help="Build as of this time (ISO); default: the latest interaction."),
    epochs: int | None = typer.Option(None, help="TransH epochs (default from the job config)."),
    topic_epochs: int | None = typer.Option(None, help="Topic-model epochs of the intent family (default 300)."),
) -> None:
    """Compute feature families and write offline parquet snapshots (older snapshots are kept)."""
    from dataclasses import replace

    from feature_repo.catalog import FAMILIES, INTENT_FAMILY, TRANSH_FAMILY
    from registry.tracking import log_feature_build
    from training.features.jobs import FeatureJobConfig, build_features
    from training.topics.errors import TopicInputError

    settings = settings_of(ctx)
    config = FeatureJobConfig()
    if epochs is not None:
        config = FeatureJobConfig(transh=replace(config.transh, epochs=epochs))
    if topic_epochs is not None:
        config = config.model_copy(update={"topics": config.topics.model_copy(update={"epochs": topic_epochs})})
    families = tuple(only) if only else FAMILIES
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise typer.BadParameter(
            f"unknown feature families {unknown}; choose from {', '.join(FAMILIES)}", param_hint="--only"
        )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("TransH", total=config.transh.epochs, info="", visible=TRANSH_FAMILY in families)
        topics = progress.add_task("topics", total=config.topics.epochs, info="", visible=INTENT_FAMILY in families)

        def on_epoch(epoch: int, record: dict) -> None:
            info = f"loss {record['loss']:.4f}" + (
                f" valid MRR {record['valid_mrr']:.3f}" if "valid_mrr" in record else ""
            )
            progress.update(task, completed=epoch, info=info)

        def on_topic_epoch(epoch: int, record: dict) -> None:
            progress.update(topics, completed=epoch, info=f"loss {record['loss']:.2f}")

        try:
            report = build_features(
                settings, families, _parse_time(as_of), config, on_epoch=on_epoch, on_topic_epoch=on_topic_epoch
            )
        except TopicInputError as exc:  # e.g. a dataset without tags: one line naming the fix
            hint = "" if only else "; build the other families with --only transh --only graph_stats"
            raise CliError(f"{exc}{hint}") from None
    table = Table(
        text_column("view"),
        number_column("rows"),
        text_column("snapshot"),
        title=f"offline snapshots as of {report.as_of:%Y-%m-%d %H:%M} UTC",
    )
    for name, path in report.written.items():
        table.add_row(name, f"{report.rows[name]:,}", path)
    console.print(table)
    if report.transh is not None:
        metrics = report.transh.test_metrics
        console.print(
            f"TransH held-out KG link prediction ({report.transh.n_test_triples} twin-free test triples, filtered, "
            f"both sides): MRR {metrics.get('mrr', float('nan')):.4f}, "
            f"Hits@10 {metrics.get('hits@10', float('nan')):.4f}"
        )
    if report.two_hop_method is not None:
        console.print(f"two-hop reach: {report.two_hop_method}")
    if report.topics is not None:
        console.print(
            f"intent topics: {report.topics.config.n_topics} over {len(report.topics.vocabulary):,} tags, final loss "
            f"{report.topics.history[-1]['loss']:.2f}; `graphrec topics show` lists them"
        )
    run_id = log_feature_build(settings, report, config)
    if run_id:
        console.print(f"logged to MLflow run {run_id}")


@app.command()
def apply(ctx: typer.Context) -> None:
    """Register the Feast definitions (entities, views, services) for these settings, as `feast apply` does."""
    from featurestore.store import apply as apply_definitions

    definitions = apply_definitions(settings_of(ctx))
    console.print(
        f"applied {len(definitions.views)} feature views and {len(definitions.services)} feature services: "
        + ", ".join(v.name for v in definitions.views)
    )


@app.command()
def materialize(
    ctx: typer.Context,
    incremental: bool = typer.Option(False, "--incremental", help="Start each view at its last materialized end."),
    view: list[str] | None = typer.Option(None, "--view", help="Only these views (default: all)."),
) -> None:
    """Write the latest offline row of every entity into the online store (SQLite or Redis), with a progress bar."""
    from featurestore.config import feature_store
    from featurestore.materialize import materialize as run_materialize

    store = feature_store(settings_of(ctx))
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        tasks: dict[str, int] = {}

        def on_batch(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done)

        report = run_materialize(store, incremental=incremental, views=view or None, progress=on_batch)
    table = Table("view", "rows", "from", "to", "seconds", title=f"materialized into {report.online_store}")
    for result in report.views:
        table.add_row(
            result.name,
            f"{result.rows:,}",
            f"{result.start:%Y-%m-%d}",
            f"{result.end:%Y-%m-%d %H:%M}",
            f"{result.seconds:.2f}",
        )
    console.print(table)
    console.print(f"{report.rows:,} rows in {report.seconds:.2f}s ({report.rows_per_second:,.0f} rows/s)")


VECTOR_PREVIEW = 8


def _shown(value: object) -> str:
    """A feature value for the table: vectors longer than VECTOR_PREVIEW show their first values and their length."""
    if isinstance(value, list) and len(value) > VECTOR_PREVIEW:
        return "[" + ", ".join(f"{v:.4f}" for v in value[:VECTOR_PREVIEW]) + f", ... ({len(value)} values)]"
    return str(value)


@app.command()
def get(
    ctx: typer.Context,
    user: int | None = typer.Option(None, "--user", help="User id."),
    item: int | None = typer.Option(None, "--item", help="Item id."),
    as_json: JsonFlag = False,
) -> None:
    """Print the online values of a user's and/or an item's catalogue features, read through Feast (--json: every
    vector in full)."""
    from featurestore.store import online_features

    if user is None and item is None:
        raise typer.BadParameter("give --user, --item or both")
    settings = settings_of(ctx)
    if unmaterialized := _unmaterialized(settings, user is not None, item is not None):
        raise CliError(
            f"feature view(s) {', '.join(unmaterialized)} are not materialized: nothing to read online yet; run "
            "`graphrec features materialize`"
        )
    values = online_features(settings, user_id=user, item_id=item)
    if as_json:
        print_json({"user_id": user, "item_id": item, "features": values})
        return
    abridged = any(isinstance(value, list) and len(value) > VECTOR_PREVIEW for value in values.values())
    table = Table(
        name_column("feature"),
        text_column("value"),
        caption="long vectors abridged; --json prints them in full" if abridged else None,
    )
    for name, value in values.items():
        table.add_row(name, _shown(value))
    console.print(table)


def _unmaterialized(settings: Settings, users: bool, items: bool) -> list[str]:
    """The catalogue views of the asked sides that were never materialized (their online values would all be
    None); a view not applied at all raises Feast's not-found error, reported with the commands to run."""
    from feature_repo.catalog import ITEM, USER, VIEWS
    from featurestore.config import feature_store

    store = feature_store(settings)
    sides = {entity.name for entity, wanted in ((USER, users), (ITEM, items)) if wanted}
    asked = [spec.name for spec in VIEWS if spec.entity.name in sides]
    return [name for name in asked if not store.get_feature_view(name).materialization_intervals]


@app.command("training-set")
def training_set(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="Parquet file to write."),
    entities: Path | None = typer.Option(
        None,
        "--entities",
        help="Parquet/CSV of user_id, item_id, event_timestamp (default: the labelled interactions).",
    ),
) -> None:
    """Point-in-time join (Feast get_historical_features) of label events with the graph features -> parquet."""
    import pandas as pd

    from featurestore.store import training_set as historical

    settings = settings_of(ctx)
    if entities is None:
        from training.data.load import load_dataset

        dataset = load_dataset(settings)
        frame = dataset.interactions.rename(columns={"user": "user_id", "item": "item_id"})
        frame["event_timestamp"] = pd.to_datetime(frame["timestamp"], unit="s", utc=True)
        frame = frame[["user_id", "item_id", "event_timestamp", "label"]]
    else:
        frame = pd.read_parquet(entities) if entities.suffix == ".parquet" else pd.read_csv(entities)
        frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    joined = historical(settings, frame)
    out.parent.mkdir(parents=True, exist_ok=True)
    joined.to_parquet(out, index=False)
    missing = int(joined.filter(like="__").isna().any(axis=1).sum())
    console.print(
        f"wrote {len(joined):,} rows x {joined.shape[1]} columns to {out} "
        f"({missing:,} rows have no feature snapshot at or before their event time)"
    )
