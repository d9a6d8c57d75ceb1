"""``graphrec serve`` (the FastAPI app under uvicorn) and ``graphrec predict`` (ask a running service)."""

from __future__ import annotations

import copy
import os
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from cli.context import console, settings_of
from cli.output import JsonFlag, number_column, print_json, text_column
from serving.client import DEFAULT_URL
from serving.schemas import ScoredItem


def log_config(log_level: str) -> dict[str, Any]:
    """uvicorn's logging config plus the ``serving`` loggers (swaps, refresh errors), which it leaves unhandled."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    level = "DEBUG" if log_level.lower() == "trace" else log_level.upper()
    config["loggers"]["serving"] = {"handlers": ["default"], "level": level, "propagate": False}
    return config


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="TCP port."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
    workers: int = typer.Option(
        1, min=1, help="Server processes on the one port, each with its own binding and item table (one per core)."
    ),
) -> None:
    """Serve models:/<registered model>@champion over HTTP (see serving/app.py for the API)."""
    import uvicorn

    console.print(f"web page: http://{host}:{port}/ui/user (models: http://{host}:{port}/ui/model)")
    options = {"host": host, "port": port, "log_level": log_level, "log_config": log_config(log_level)}
    if workers == 1:
        from serving.app import create_app

        uvicorn.run(create_app(settings_of(ctx)), **options)
        return
    from graphrec.environment import settings_environment

    os.environ.update(settings_environment(settings_of(ctx)))  # the workers read their settings from it
    uvicorn.run("serving.workers:app_from_environment", factory=True, workers=workers, **options)


def _item_ids(items: str) -> list[int]:
    try:
        return [int(part) for part in items.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter("--items takes comma-separated integer ids, e.g. 1,2,3") from None


def predict(
    ctx: typer.Context,
    user: int = typer.Option(..., "--user", help="User id."),
    items: str = typer.Option(..., "--items", help="Comma-separated candidate item ids."),
    url: str = typer.Option(DEFAULT_URL, "--url", help="Base URL of the service."),
    variant: str | None = typer.Option(None, help="Force 'champion' or 'challenger'."),
    explain: bool = typer.Option(False, "--explain", help="Print why each item got its score."),
    as_json: JsonFlag = False,
) -> None:
    """Score candidate items for a user on a running service and print them ranked (--json: the service's answer)."""
    from serving.client import ServingClient

    settings_of(ctx)
    with ServingClient(url, variant=variant) as client:  # an error answer or no service: one line (cli/context.py)
        result = client.predict(user, _item_ids(items), explain=explain)
    if as_json:
        print_json(result)
        return
    model = result.model
    console.print(f"[bold]{model.name}[/bold] v{model.version} ({model.alias}) — user {user}")
    table = Table(
        number_column("rank"),
        number_column("item"),
        number_column("score"),
        text_column("source"),
        caption=f"fallback: {result.fallback}" if result.fallback else None,
    )
    for scored in result.scores:
        table.add_row(str(scored.rank), str(scored.item_id), f"{scored.score:.4f}", scored.source)
    console.print(table)
    if explain:
        for scored in result.scores:
            console.print(explanation_text(scored))


METHOD_NOTES = {
    "leave_one_out": "score change if removed",
    "nearest_seen_items": "similarity to a training item of the user",
}


def explanation_text(scored: ScoredItem) -> Text:
    """Readable reasons of one scored item: its name, then each side's neighbours with relation and number."""
    explanation = scored.explanation
    text = Text(f"{scored.rank}. item {scored.item_id}", style="bold")
    if explanation is None:
        reason = "popularity fallback" if scored.source == "popularity" else "the model has no explanation"
        return text.append(f": no explanation ({reason})", style="not bold dim")
    if explanation.item_name != f"item {scored.item_id}":
        text.append(f" {explanation.item_name}")
    text.append(f"  [{METHOD_NOTES[explanation.method]}]", style="not bold dim")
    for side, reasons in (("user side", explanation.user_side), ("item side", explanation.item_side)):
        for reason in reasons:
            number = reason.contribution if reason.contribution is not None else reason.similarity
            via = f"{reason.kind or 'node'}, {reason.relation}" if reason.relation else reason.kind or "node"
            text.append(f"\n   {side}  {number:+.3f}  {reason.name} ({via})", style="not bold")
    return text
