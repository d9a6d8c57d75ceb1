"""``graphrec demo``: the main job end to end on the embedded defaults, one stage after another."""

from __future__ import annotations

import time
from collections.abc import Callable

import typer
from rich.rule import Rule

from graphrec.cli.context import console, key_value_table, reported_errors, settings_of
from graphrec.settings import Settings

DEMO_SYNTH_USERS = 5_000


def _stage(title: str, action: Callable[[], None]) -> None:
    console.print(Rule(f"[bold]{title}"))
    started = time.perf_counter()
    action()
    console.print(f"[dim]{title}: {time.perf_counter() - started:.1f}s[/dim]")


def resolve_demo_data(settings: Settings) -> Settings:
    """Real Last.FM data when present, else a seeded synthetic dataset generated under the work dir."""
    from training.data.lastfm import missing_lastfm_files
    from training.data.load import LASTFM

    if settings.dataset != LASTFM or not missing_lastfm_files(settings.data_dir):
        return settings
    from training.synth.generator import SynthConfig, generate_dataset

    folder = settings.work_dir / "synthetic-demo"
    console.print(f"No Last.FM data under {settings.data_dir}: generating {DEMO_SYNTH_USERS:,} synthetic users.")
    generate_dataset(SynthConfig(n_users=DEMO_SYNTH_USERS, seed=settings.seed), folder)
    return settings.model_copy(update={"dataset": str(folder)})


def demo(ctx: typer.Context) -> None:
    """Load and validate the data, summarise it and build its graphs (later stages extend this job)."""
    from training.graphs.build import build_and_save_graphs
    from training.summary import dataset_summary

    settings = resolve_demo_data(settings_of(ctx))

    def summarise() -> None:
        for title, rows in dataset_summary(settings).items():
            console.print(key_value_table(title, rows))

    def graphs() -> None:
        folder, built = build_and_save_graphs(settings)
        for name, graph in built.items():
            console.print(f"{name}: {graph.num_nodes():,} nodes, {graph.num_edges():,} edges -> {folder}")

    with reported_errors():
        _stage("1. load, validate and summarise the data", summarise)
        _stage("2. build the graphs (training interactions only)", graphs)
