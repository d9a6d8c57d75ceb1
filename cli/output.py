"""Rendering for the CLI: tables that fold rather than cut a value, and one JSON document for scripts."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic_core import to_json
from rich.console import Console
from rich.measure import Measurement
from rich.table import Column, Table

JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables (notes go to stderr).")
]
WideFlag = Annotated[bool, typer.Option("--wide", help="Show every column, as wide as the values need.")]
UNBOUNDED = 10_000


def text_column(header: str) -> Column:
    """A column whose long values fold onto the next line instead of ending in an ellipsis."""
    return Column(header, overflow="fold")


def name_column(header: str) -> Column:
    """A column of identifiers kept whole on one line, so the value columns beside it fold instead."""
    return Column(header, no_wrap=True)


def number_column(header: str) -> Column:
    """A right-aligned column that is never wrapped or shrunk (choose the columns so that it fits); a header wider
    than the values can be split over lines with ``\\n``."""
    return Column(header, justify="right", no_wrap=True)


def key_value_table(title: str, rows: dict[str, object]) -> Table:
    """A two-column summary table: bold labels, right-aligned values (integers with thousands separators)."""
    table = Table(title=title, show_header=False)
    table.add_column(style="bold", overflow="fold")
    table.add_column(justify="right", overflow="fold")
    for key, value in rows.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    return table


def print_table(console: Console, table: Table, wide: bool = False) -> None:
    """Print ``table`` within the console's width, or, when ``wide``, as wide as its values need."""
    if wide:
        natural = Measurement.get(console, console.options.update_width(UNBOUNDED), table).maximum
        table.width = natural if natural > console.width else None
    console.print(table, crop=not wide)


def _plain(value: object) -> object:
    """numpy scalars and arrays (as Feast and pandas hand them out) as plain Python numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def print_json(data: object) -> None:
    """Write ``data`` (a pydantic model, dataclass, dict or list) as exactly one JSON document on stdout: numbers
    stay numbers, NaN becomes null, datetimes become ISO 8601."""
    typer.echo(to_json(data, indent=2, inf_nan_mode="null", fallback=_plain).decode())
