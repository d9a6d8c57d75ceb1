"""Root of the ``graphrec`` command: global options build the one Settings object every subcommand reads."""

from __future__ import annotations

from pathlib import Path

import typer

from cli import crossdomain, data, demo, features, models, monitor, simulate, topics, train, work
from cli import serve as serve_cli
from cli.context import DEBUG_KEY, ReportedErrorsGroup
from graphrec.settings import Settings
from graphrec.warnings import silence_benign_warnings

app = typer.Typer(
    help="graphrec: graph recommendation with Feast features, MLflow registry and FastAPI serving.",
    no_args_is_help=True,
    cls=ReportedErrorsGroup,
    pretty_exceptions_show_locals=False,
)
app.add_typer(data.app, name="data")
app.add_typer(features.app, name="features")
app.add_typer(models.app, name="models")
app.add_typer(topics.app, name="topics")
app.add_typer(work.app, name="work")
app.add_typer(crossdomain.app, name="crossdomain")
app.add_typer(monitor.app, name="monitor")
app.add_typer(simulate.app, name="simulate")
app.command(name="demo")(demo.demo)
app.command(name="train")(train.train)
app.command(name="evaluate")(train.evaluate)
app.command(name="tune")(train.tune)
app.command(name="serve")(serve_cli.serve)
app.command(name="predict")(serve_cli.predict)


@app.callback()
def root(
    ctx: typer.Context,
    dataset: str | None = typer.Option(None, help="'lastfm' or a dataset folder (GRAPHREC_DATASET)."),
    data_dir: Path | None = typer.Option(None, help="Folder of the real datasets (GRAPHREC_DATA_DIR)."),
    work_dir: Path | None = typer.Option(None, help="Folder for all generated state (GRAPHREC_WORK_DIR)."),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of any failure, not one line."),
) -> None:
    """Build the settings once; options override GRAPHREC_* environment variables."""
    ctx.meta[DEBUG_KEY] = debug
    silence_benign_warnings()
    overrides = {k: v for k, v in {"dataset": dataset, "data_dir": data_dir, "work_dir": work_dir}.items() if v}
    ctx.obj = Settings(**overrides)
