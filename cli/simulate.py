"""``graphrec simulate traffic``: requests to a running service and clicks from the dataset's held-out positives."""

from __future__ import annotations

import typer
from rich.progress import Progress
from rich.table import Table

from cli.context import console, reported_errors, settings_of
from cli.output import JsonFlag, name_column, number_column, print_json
from serving.client import DEFAULT_URL

app = typer.Typer(help="Simulated users for the online loop.", no_args_is_help=True)


@app.command("traffic")
def traffic(
    ctx: typer.Context,
    requests: int = typer.Option(..., "--requests", min=1, help="How many requests to send."),
    url: str = typer.Option(DEFAULT_URL, help="The running service."),
    route: str = typer.Option("predict", help="predict (candidates: held-out positives + random) or recommend."),
    candidates: int = typer.Option(20, min=1, help="Candidates per /v1/predict request."),
    shown: int = typer.Option(5, min=1, help="Top items of each answer the simulated user sees."),
    hit: float = typer.Option(0.5, min=0.0, max=1.0, help="Click chance of a shown held-out positive."),
    miss: float = typer.Option(0.02, min=0.0, max=1.0, help="Click chance of any other shown item."),
    concurrency: int = typer.Option(4, min=1, help="Requests in flight at once."),
    seed: int | None = typer.Option(None, help="Seed of users and clicks; default: the settings' seed."),
    json_out: JsonFlag = False,
) -> None:
    """Send requests, show each answer's top items, post impressions and the clicks the ground truth draws."""
    settings = settings_of(ctx)
    if route not in ("predict", "recommend"):
        raise typer.BadParameter(f"--route {route!r}: choose predict or recommend")
    with reported_errors():
        from training.data.load import load_dataset
        from training.simulation import ClickTruth, simulate_traffic

        truth = ClickTruth.held_out(load_dataset(settings), settings.seed, hit=hit, miss=miss)
        with Progress(console=console, transient=True, disable=json_out) as progress:
            task = progress.add_task("requests", total=requests)
            report = simulate_traffic(
                url,
                truth,
                requests,
                route=route,  # type: ignore[arg-type]
                candidates=candidates,
                shown=shown,
                concurrency=concurrency,
                seed=settings.seed if seed is None else seed,
                on_request=lambda: progress.advance(task),
            )
        if json_out:
            print_json(report)
        else:
            table = Table(
                name_column("arm"), number_column("requests"), number_column("impr."), number_column("clicks")
            )
            for arm, counts in sorted(report.arms.items()):
                table.add_row(arm, f"{counts.requests:,}", f"{counts.impressions:,}", f"{counts.clicks:,}")
            console.print(table)
            console.print(
                f"{report.requests:,} requests, {report.failed:,} failed, {report.feedback_events:,} feedback events"
            )
            for line in report.errors:
                console.print(f"[red]failed:[/red] {line}", soft_wrap=True)
        if report.failed:
            raise typer.Exit(1)
