"""Shared CLI plumbing: the settings carried through typer's context, the console, error reporting."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from graphrec.settings import Settings

console = Console()
err_console = Console(stderr=True)
MAX_PRINTED = 200


def settings_of(ctx: typer.Context) -> Settings:
    """The settings object the root command built."""
    settings = ctx.find_root().obj
    if not isinstance(settings, Settings):
        raise RuntimeError("graphrec settings were not initialised by the root command")
    return settings


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn known input errors into a readable message and exit code 1, instead of a traceback."""
    from training.data.errors import DataNotFoundError, DatasetError

    try:
        yield
    except DatasetError as exc:
        # one plain line per problem, "file:line column 'name': message", so editors and grep can jump to it
        err_console.print(f"[red]{len(exc.problems)} problem(s) in the input data:[/red]")
        for problem in exc.problems[:MAX_PRINTED]:
            err_console.print(str(problem), markup=False, highlight=False, soft_wrap=True)
        if len(exc.problems) > MAX_PRINTED:
            err_console.print(f"... and {len(exc.problems) - MAX_PRINTED} more")
        err_console.print("[red]Input is invalid; nothing was written.[/red]")
        raise typer.Exit(1) from None
    except DataNotFoundError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
