"""``graphrec data``: validate, summarise, generate and graph datasets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from cli.context import console, settings_of
from cli.output import JsonFlag, key_value_table, print_json

if TYPE_CHECKING:
    from training.summary import DatasetSummary

app = typer.Typer(help="Validate, summarise and generate datasets; build their graphs.", no_args_is_help=True)


@app.command()
def validate(ctx: typer.Context) -> None:
    """Read the configured dataset and report every bad record (file, line, column); exit 1 if any."""
    from training.data.load import load_dataset

    settings = settings_of(ctx)
    dataset = load_dataset(settings)
    console.print(f"[green]valid[/green]: {dataset.name} (fingerprint {dataset.fingerprint})")


def summary_tables(summary: DatasetSummary) -> list[Table]:
    """The dataset summary as the four tables ``data stats`` and the demo print."""
    activity = summary.activity
    return [
        key_value_table(f"dataset {summary.dataset} ({summary.fingerprint})", dict(summary.counts)),
        key_value_table(
            f"split ctr 6:2:2 seed {summary.split.seed}",
            {"train rows": summary.split.train, "valid rows": summary.split.valid, "test rows": summary.split.test},
        ),
        key_value_table(
            "user activity (training positives)",
            {
                "median training positives per user": activity.median,
                "99th percentile": activity.p99,
                "max": activity.max,
            }
            | {
                f"{name} tercile: users / mean positives": f"{tercile.users:,} / {tercile.mean_positives:.1f}"
                for name, tercile in activity.terciles.items()
            },
        ),
        key_value_table(
            "collaborative knowledge graph",
            {
                "nodes": summary.ckg.nodes,
                "edges (with inverses)": summary.ckg.edges,
                "relations (with inverses)": summary.ckg.relations,
            },
        ),
    ]


@app.command()
def stats(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Print the dataset's counts, activity skew and graph sizes (tables, or one JSON document with --json)."""
    from training.summary import dataset_summary

    settings = settings_of(ctx)
    summary = dataset_summary(settings)
    if as_json:
        print_json(summary)
        return
    for table in summary_tables(summary):
        console.print(table)


@app.command()
def graph(ctx: typer.Context) -> None:
    """Build the collaborative knowledge graph and the heterograph from the training split and save them."""
    from training.graphs.build import build_and_save_graphs

    settings = settings_of(ctx)
    folder, graphs = build_and_save_graphs(settings)
    for name, g in graphs.items():
        console.print(f"[bold]{name}[/bold]: {g.num_nodes():,} nodes, {g.num_edges():,} edges")
    console.print(f"saved to {folder}")


@app.command()
def synth(
    users: int = typer.Option(..., "--users", min=10, help="Number of users (10^3 to 10^7)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives byte-identical files."),
    out: Path = typer.Option(..., "--out", help="Output folder (replaced atomically when generation succeeds)."),
    kg_driven_share: float = typer.Option(
        0.0,
        "--kg-driven-share",
        min=0.0,
        max=1.0,
        help="Chance a click follows a KG path (item -> manager/merchant -> item) from an item the user holds.",
    ),
    items: int = typer.Option(
        0, "--items", min=0, help="Catalogue size; 0 derives it as users / 10 (200 to 200,000). More: colder items."
    ),
) -> None:
    """Generate a seeded synthetic dataset (power-law activity, fund/coupon KG, homophilous friends, two domains)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from training.synth.generator import SynthConfig, generate_dataset

    try:
        # A KG-driven set is named for its share, so reports and tuned configs never mistake it for the plain one.
        # So is one with a catalogue size given: its items' click counts differ.
        name = f"{SynthConfig.name}-kg{kg_driven_share:g}" if kg_driven_share else SynthConfig.name
        name += f"-items{items}" if items else ""
        config = SynthConfig(n_users=users, seed=seed, n_items=items, kg_driven_share=kg_driven_share, name=name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    with Progress(TextColumn("users"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("synth", total=users)
        summary = generate_dataset(config, out, progress=lambda done, total: bar.update(task, completed=done))
    console.print(
        key_value_table(
            f"synthetic dataset -> {out} ({summary.seconds:.1f}s)",
            {
                "users": summary.n_users,
                "items": summary.n_items,
                "entities": summary.n_entities,
                "relations": summary.n_relations,
                "labelled rows": summary.labelled_rows,
                "KG triples": summary.kg_triples,
                "friendships": summary.friendships,
                "tag assignments": summary.tags,
            },
        )
    )
