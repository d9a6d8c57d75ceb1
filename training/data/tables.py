"""Read one tab-separated table against its :class:`TableSpec`, reporting every bad record with file/line/column.

The common case (a clean file) is read by pandas' C parser in one pass; only when that fails is the file re-read line
by line to find and name every bad field, so validation costs nothing extra on good data and is exact on bad data.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.errors import DatasetError, Problem
from training.data.schema import Kind, TableSpec

_DTYPES = {Kind.int: "int64", Kind.float: "float64", Kind.text: "string"}


def read_table(path: Path, spec: TableSpec, bounds: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Read and validate ``path``; raise :class:`DatasetError` listing every problem found."""
    names, problems = _header(path, spec)
    if problems:
        raise DatasetError(problems)
    frame = _read_fast(path, spec, names)
    if frame is None:
        raise DatasetError(_scan_fields(path, spec, names))
    problems = _check_values(frame, path, spec, bounds or {})
    if problems:
        raise DatasetError(problems)
    return frame.reset_index(drop=True)


def _first_data_line(spec: TableSpec) -> int:
    return 2 if spec.header else 1


def _header(path: Path, spec: TableSpec) -> tuple[list[str], list[Problem]]:
    if not spec.header:
        return [c.name for c in spec.columns], []
    with open(path, encoding=spec.encoding, newline="") as handle:
        first = handle.readline().rstrip("\r\n")
    names = first.split("\t") if first else []
    known = {c.name for c in spec.columns}
    problems = [
        Problem(path, 1, name, "required column is missing from the header")
        for name in spec.required_names
        if name not in names
    ]
    problems += [
        Problem(path, 1, name, f"unknown column (expected some of: {', '.join(c.name for c in spec.columns)})")
        for name in names
        if name not in known
    ]
    problems += [Problem(path, 1, name, "column appears twice") for name in set(names) if names.count(name) > 1]
    return names, problems


def _read_fast(path: Path, spec: TableSpec, names: list[str]) -> pd.DataFrame | None:
    dtypes = {c.name: _DTYPES[c.kind] for c in spec.columns if c.name in names}
    try:
        return pd.read_csv(
            path,
            sep="\t",
            header=0 if spec.header else None,
            names=names,
            dtype=dtypes,
            encoding=spec.encoding,
            quoting=csv.QUOTE_NONE,
            skip_blank_lines=False,
            keep_default_na=False,
            na_filter=False,
            engine="c",
        )
    except (ValueError, pd.errors.ParserError, OverflowError):
        return None


def _parse_field(raw: str, kind: Kind) -> str | None:
    """Return an error message for a field that does not parse as ``kind``, else None."""
    if kind is Kind.text:
        return None if raw != "" else "empty value"
    try:
        int(raw) if kind is Kind.int else float(raw)
    except ValueError:
        what = "an integer" if kind is Kind.int else "a number"
        return f"expected {what}, found {raw!r}"
    return None


def _scan_fields(path: Path, spec: TableSpec, names: list[str]) -> list[Problem]:
    """Slow path, only for files pandas could not parse: name every malformed line and bad field."""
    kinds = [spec.column(n).kind for n in names]
    problems: list[Problem] = []
    with open(path, encoding=spec.encoding, newline="") as handle:
        for line_no, line in enumerate(handle, start=1):
            if spec.header and line_no == 1:
                continue
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) != len(names):
                problems.append(
                    Problem(path, line_no, None, f"malformed line: expected {len(names)} fields, found {len(fields)}")
                )
                continue
            for name, kind, raw in zip(names, kinds, fields, strict=True):
                message = _parse_field(raw, kind)
                if message:
                    problems.append(Problem(path, line_no, name, message))
    if not problems:  # pandas failed for a reason the scan does not model; say so rather than pass silently
        problems.append(Problem(path, None, None, "file could not be parsed as tab-separated values"))
    return problems


def _check_values(frame: pd.DataFrame, path: Path, spec: TableSpec, bounds: Mapping[str, int]) -> list[Problem]:
    """Vectorised checks on parsed values: id ranges, allowed values, duplicate keys."""
    problems: list[Problem] = []
    offset = _first_data_line(spec)
    for column in spec.columns:
        if column.name not in frame.columns or column.kind is Kind.text:
            continue
        values = frame[column.name].to_numpy()
        if column.bound is not None and column.bound in bounds:
            limit = bounds[column.bound]
            for row in np.flatnonzero((values < 0) | (values >= limit)):
                message = f"id {values[row]} out of range [0, {limit}) ({column.bound} = {limit})"
                if spec.file.endswith("kg.tsv") and column.name in ("head", "tail"):
                    message = f"KG entity {values[row]} is never defined (n_entities = {limit})"
                problems.append(Problem(path, int(row) + offset, column.name, message))
        if column.allowed is not None:
            for row in np.flatnonzero(~np.isin(values, column.allowed)):
                allowed = "/".join(map(str, column.allowed))
                problems.append(Problem(path, int(row) + offset, column.name, f"value {values[row]} is not {allowed}"))
    if spec.key and all(k in frame.columns for k in spec.key):
        keys = list(spec.key)
        duplicated = frame.duplicated(keys, keep="first").to_numpy()
        if duplicated.any():
            positions = pd.Series(np.arange(len(frame)), index=frame.index)
            first_row = positions.groupby([frame[k] for k in keys], sort=False).transform("min").to_numpy()
            for row in np.flatnonzero(duplicated):
                problems.append(
                    Problem(
                        path,
                        int(row) + offset,
                        ",".join(keys),
                        f"duplicate row: same {'/'.join(keys)} as line {int(first_row[row]) + offset}",
                    )
                )
    return problems
