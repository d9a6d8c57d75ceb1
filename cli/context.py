"""Shared CLI plumbing: the settings carried through typer's context, the console, error reporting."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING

import click
import typer
import typer.core
from rich.console import Console

from graphrec.settings import Settings

if TYPE_CHECKING:
    from pydantic import ValidationError
    from yaml import YAMLError

console = Console()
err_console = Console(stderr=True)
MAX_PRINTED = 200
DEBUG_KEY = "graphrec.debug"
# MLflow error codes that mean "the request named something wrong", not a broken registry
MLFLOW_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS"})


class CliError(Exception):
    """An expected failure found by a command itself: printed as ``error: <message>``, exit code 1."""


def settings_of(ctx: typer.Context) -> Settings:
    """The settings object the root command built."""
    settings = ctx.find_root().obj
    if not isinstance(settings, Settings):
        raise RuntimeError("graphrec settings were not initialised by the root command")
    return settings


def debugging(ctx: click.Context | None = None) -> bool:
    """Whether ``graphrec --debug`` asked for tracebacks instead of one-line messages (``ctx``: any context of the
    command, by default the current one)."""
    ctx = ctx or click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().meta.get(DEBUG_KEY))


def validation_message(exc: ValidationError) -> str:
    """A pydantic ValidationError on one line: ``invalid Title: field: message; field: message``."""
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()]
    return f"invalid {exc.title}: " + "; ".join(parts)


def yaml_message(exc: YAMLError) -> str:
    """A YAML syntax error on one line, with its line and column when the parser gives them."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or problem is None:
        return f"invalid YAML: {' '.join(str(exc).split())}"
    return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _loaded(module: str) -> ModuleType | None:
    """``module`` if something already imported it: an exception of a library never imported cannot be raised, and
    importing mlflow or feast just to classify an error would cost seconds."""
    return sys.modules.get(module)


def expected_message(exc: BaseException) -> tuple[str, str] | None:
    """``(prefix, message)`` for an expected failure (bad input, missing state, a gate refusal), None for anything
    else: a bug keeps its traceback."""
    if isinstance(exc, CliError):
        return "error", str(exc)
    if isinstance(exc, FileNotFoundError):
        return "error", f"no such file or folder: {exc.filename}" if exc.filename else str(exc)
    if (promotion := _loaded("registry.promotion")) is not None:
        if isinstance(exc, promotion.PromotionRefused):
            return "refused", str(exc)
        if isinstance(exc, promotion.RegistryError):
            return "error", str(exc)
    if (integrity := _loaded("serving.model_integrity")) is not None and isinstance(exc, integrity.UnverifiedModel):
        return "refused", str(exc)
    if (yaml := _loaded("yaml")) is not None and isinstance(exc, yaml.YAMLError):
        return "error", yaml_message(exc)
    if (pydantic := _loaded("pydantic")) is not None and isinstance(exc, pydantic.ValidationError):
        return "error", validation_message(exc)
    if (client := _loaded("serving.client")) is not None and isinstance(exc, client.ServingError):
        return "error", f"the service answered {exc}"
    if (httpx := _loaded("httpx")) is not None and isinstance(exc, httpx.TransportError):
        try:
            where = str(exc.request.url)
        except RuntimeError:  # raised before a request was built
            where = "the service"
        return "error", f"cannot reach {where}: {exc}"
    mlflow_errors = _loaded("mlflow.exceptions")
    if mlflow_errors is not None and isinstance(exc, mlflow_errors.MlflowException) and exc.error_code in MLFLOW_CODES:
        return "error", exc.message
    if (ray_runtime := _loaded("featurestore.ray_runtime")) is not None and isinstance(exc, ray_runtime.RayUnavailable):
        return "error", str(exc)
    feast_errors = _loaded("feast.errors")
    if feast_errors is not None and isinstance(exc, feast_errors.FeastObjectNotFoundException):
        return "error", f"{exc}: run `graphrec features apply`, then `graphrec features materialize`"
    return None


@contextmanager
def reported_errors(ctx: click.Context | None = None) -> Iterator[None]:
    """Turn expected failures into one readable line on stderr (``error: …``, ``refused: …`` for a gate refusal, or
    one line per bad record for invalid data) and exit code 1, instead of a traceback. Unexpected exceptions (bugs)
    pass through with their traceback; with ``graphrec --debug`` (read from ``ctx``, by default the current context)
    every exception does."""
    from training.data.errors import DataNotFoundError, DatasetError

    try:
        yield
    except DatasetError as exc:
        if debugging(ctx):
            raise
        # one plain line per problem, "file:line column 'name': message", so editors and grep can jump to it
        err_console.print(f"[red]{len(exc.problems)} problem(s) in the input data:[/red]")
        for problem in exc.problems[:MAX_PRINTED]:
            err_console.print(str(problem), markup=False, highlight=False, soft_wrap=True)
        if len(exc.problems) > MAX_PRINTED:
            err_console.print(f"... and {len(exc.problems) - MAX_PRINTED} more")
        err_console.print("[red]Input is invalid; nothing was written.[/red]")
        raise typer.Exit(1) from None
    except DataNotFoundError as exc:
        if debugging(ctx):
            raise
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except Exception as exc:
        found = None if debugging(ctx) else expected_message(exc)
        if found is None:
            raise
        prefix, message = found
        err_console.print(f"[red]{prefix}:[/red] ", end="", highlight=False)
        err_console.print(message, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


class ReportedErrorsGroup(typer.core.TyperGroup):
    """The root command group: every subcommand (and the root callback) runs inside :func:`reported_errors`."""

    def invoke(self, ctx: click.Context) -> object:
        """Invoke the root callback and the subcommand, reporting expected failures as one line."""
        with reported_errors(ctx):
            return super().invoke(ctx)
