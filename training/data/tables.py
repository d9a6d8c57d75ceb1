"""Read one tab-separated table against its :class:`TableSpec`, reporting every bad record with file/line/column.

One rule set decides what a file holds, for the loader and ``graphrec data validate`` alike (docs/DATA_FORMAT.md):

- lines end with LF, CRLF or CR; a UTF-8 byte-order mark at the start of the file is ignored;
- every line decodes in the spec's encoding and has exactly one tab-separated field per column (no quoting);
- an ``int`` field is ``-?[0-9]+`` within 64 bits, a ``float`` field a finite decimal number, a ``text`` field is
  not empty;
- the rows that parse are then checked for id ranges, allowed values, duplicate keys, self-loops and a minimum count.

pyarrow's CSV reader splits a clean file into string fields in one pass. When it refuses the file (a line with the
wrong number of fields, bytes that do not decode), the file is split again line by line to name every such line; the
lines that did split go through the same value checks, so a bad line never hides a bad value on another line.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from training.data.errors import DatasetError, Problem
from training.data.schema import Column, Kind, TableSpec

BOM = codecs.BOM_UTF8
INT_PATTERN = r"-?[0-9]+"
FLOAT_PATTERN = r"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?"
_SAFE_INT_CHARS = 18  # a matching field of at most this many characters always fits in 64 bits
_SHOWN_CHARS = 40  # a bad field longer than this is cut short in messages
_BATCH_ROWS = 65_536  # rows per pyarrow chunk when a file is split line by line


def read_table(path: Path, spec: TableSpec, bounds: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Read and validate ``path``; raise :class:`DatasetError` listing every problem found."""
    names, problems = _header(path, spec)
    if problems:
        raise DatasetError(problems)
    cells, lines, problems = _split(path, spec, names)
    data_rows = cells.num_rows + len(problems)
    if data_rows < spec.min_rows:
        problems.append(Problem(path, 1, None, f"the table has {data_rows} data rows; at least {spec.min_rows} needed"))
    frame, parsed, bad_values = _convert(cells, lines, path, spec)
    problems += bad_values
    problems += _check_values(frame, parsed, lines, path, spec, bounds or {})
    if problems:
        raise DatasetError(sorted(problems, key=lambda p: p.line or 0))
    return frame


def _is_utf8(spec: TableSpec) -> bool:
    """Whether the spec's encoding is UTF-8 (the only one with a byte-order mark to ignore)."""
    return codecs.lookup(spec.encoding).name == "utf-8"


def decode_line(
    line: bytes, line_no: int, path: Path, encoding: str, names: list[str]
) -> tuple[str | None, list[Problem]]:
    """One line as text, or a problem naming the line, the column and the byte that does not decode (the codec's own
    error would name neither)."""
    try:
        return line.decode(encoding), []
    except UnicodeDecodeError as exc:
        field = line[: exc.start].count(b"\t")
        column = names[field] if field < len(names) else None
        message = f"not valid {encoding}: byte 0x{line[exc.start]:02x} at byte {exc.start + 1} of the line"
        return None, [Problem(path, line_no, column, message)]


def _header(path: Path, spec: TableSpec) -> tuple[list[str], list[Problem]]:
    """Column names from the header line (or the spec when the file has none), and what is wrong with them."""
    if not spec.header:
        return [c.name for c in spec.columns], []
    with open(path, "rb") as handle:
        first = handle.readline()
    if _is_utf8(spec) and first.startswith(BOM):
        first = first[len(BOM) :]
    first = first.splitlines()[0] if first.strip(b"\r\n") else b""
    text, problems = decode_line(first, 1, path, spec.encoding, [])
    if text is None:
        return [], problems
    names = text.split("\t") if text else []
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


def _split(path: Path, spec: TableSpec, names: list[str]) -> tuple[pa.Table, np.ndarray, list[Problem]]:
    """Every data line's fields as strings, each row's line number, and the lines that could not be split."""
    first_line = 2 if spec.header else 1
    try:
        cells = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=first_line - 1, encoding=spec.encoding),
            parse_options=pacsv.ParseOptions(
                delimiter="\t", quote_char=False, escape_char=False, newlines_in_values=False, ignore_empty_lines=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False, null_values=[]
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return _split_lines(path, spec, names)
    return cells, np.arange(cells.num_rows) + first_line, []


def _split_lines(path: Path, spec: TableSpec, names: list[str]) -> tuple[pa.Table, np.ndarray, list[Problem]]:
    """The same split as :func:`_split`, line by line, naming every line that does not decode or has a wrong shape.
    Streams the file and keeps fields in pyarrow batches, so a bad line in a large file costs time, not memory."""
    chunks: list[list[pa.Array]] = [[] for _ in names]
    batch: list[list[str]] = []
    bad_lines: list[int] = []
    problems: list[Problem] = []
    line_no = 0
    for line_no, line in enumerate(_raw_lines(path, spec), start=1):
        if spec.header and line_no == 1:
            continue
        fields, line_problems = _fields(line, line_no, path, spec, names)
        if line_problems:
            problems += line_problems
            bad_lines.append(line_no)
            continue
        batch.append(fields)
        if len(batch) == _BATCH_ROWS:
            _flush(batch, chunks)
    _flush(batch, chunks)
    lines = np.setdiff1d(np.arange(2 if spec.header else 1, line_no + 1), bad_lines)
    cells = pa.table({name: pa.chunked_array(column, pa.string()) for name, column in zip(names, chunks, strict=True)})
    return cells, lines, problems


def _raw_lines(path: Path, spec: TableSpec) -> Iterator[bytes]:
    """The file's lines without their endings, split where pyarrow splits them (LF, CRLF, CR); a leading BOM dropped."""
    with open(path, "rb") as handle:
        for number, chunk in enumerate(handle):
            if number == 0 and _is_utf8(spec) and chunk.startswith(BOM):
                chunk = chunk[len(BOM) :]
            yield from chunk.splitlines() or [b""]


def _fields(
    line: bytes, line_no: int, path: Path, spec: TableSpec, names: list[str]
) -> tuple[list[str], list[Problem]]:
    """One line's fields, or the problems that keep it from having one field per column."""
    text, problems = decode_line(line, line_no, path, spec.encoding, names)
    if text is None:
        return [], problems
    fields = text.split("\t")
    if len(fields) != len(names):
        return [], [Problem(path, line_no, None, f"malformed line: expected {len(names)} fields, found {len(fields)}")]
    return fields, []


def _flush(batch: list[list[str]], chunks: list[list[pa.Array]]) -> None:
    """Move a batch of rows into per-column pyarrow chunks (compact, unlike lists of Python strings)."""
    for index, column in enumerate(chunks):
        column.append(pa.array([row[index] for row in batch], pa.string()))
    batch.clear()


def _convert(
    cells: pa.Table, lines: np.ndarray, path: Path, spec: TableSpec
) -> tuple[pd.DataFrame, dict[str, np.ndarray], list[Problem]]:
    """Typed columns (a placeholder where a field is bad), per column the mask of fields that parsed, and a problem
    per bad field. Keeping every row lets the value checks judge the good fields of a row that has a bad one."""
    columns: dict[str, np.ndarray | pd.Series] = {}
    parsed: dict[str, np.ndarray] = {}
    problems: list[Problem] = []
    for name in cells.column_names:
        column = spec.column(name)
        strings = cells.column(name).combine_chunks()
        values, bad = _parse(strings, column.kind)
        problems += [
            Problem(path, int(lines[row]), name, _field_message(strings[row].as_py(), column))
            for row in np.flatnonzero(bad)
        ]
        parsed[name] = ~bad
        columns[name] = values
    return pd.DataFrame(columns), parsed, problems


def _parse(strings: pa.Array, kind: Kind) -> tuple[np.ndarray | pd.Series, np.ndarray]:
    """Values of one column of string fields parsed as ``kind`` (a placeholder where bad) and the mask of bad ones."""
    if kind is Kind.text:
        return pd.Series(strings.to_numpy(zero_copy_only=False), dtype="string"), _mask(pc.equal(strings, ""))
    good = _int_syntax(strings) if kind is Kind.int else _mask(pc.match_substring_regex(strings, f"^{FLOAT_PATTERN}$"))
    if not good.all():
        strings = pc.if_else(pa.array(good), strings, "0")
    values = pc.cast(strings, pa.int64() if kind is Kind.int else pa.float64()).to_numpy()
    if kind is Kind.float:
        good &= np.isfinite(values)
    return values, ~good


def _int_syntax(strings: pa.Array) -> np.ndarray:
    """Which fields match ``INT_PATTERN`` and fit in 64 bits (vectorised: ASCII digits after at most one '-')."""
    good = _mask(pc.ascii_is_decimal(strings))
    negative = np.flatnonzero(~good & _mask(pc.starts_with(strings, "-")))
    if len(negative):
        good[negative] = _mask(pc.ascii_is_decimal(pc.utf8_slice_codeunits(strings.take(negative), 1)))
    long = np.flatnonzero(good & _mask(pc.greater(pc.binary_length(strings), _SAFE_INT_CHARS)))
    good[long] = [_fits_int64(strings[int(row)].as_py()) for row in long]
    return good


def _mask(flags: pa.Array) -> np.ndarray:
    """A pyarrow boolean array as a writable numpy mask."""
    return np.array(flags.to_numpy(zero_copy_only=False), dtype=bool)


def _fits_int64(text: str) -> bool:
    """Whether an integer literal lies within the signed 64-bit range."""
    return -(2**63) <= int(text) < 2**63


def _field_message(raw: str, column: Column) -> str:
    """Why one field of ``column`` was refused, quoting it (cut short when long)."""
    shown = repr(raw if len(raw) <= _SHOWN_CHARS else raw[:_SHOWN_CHARS] + "...")
    if column.kind is Kind.text:
        return "empty value"
    if column.kind is Kind.float:
        return f"expected a finite decimal number, found {shown}"
    if re.fullmatch(INT_PATTERN, raw):
        return f"integer does not fit in 64 bits: {shown}"
    return f"expected an integer, found {shown}"


def _check_values(
    frame: pd.DataFrame,
    parsed: dict[str, np.ndarray],
    lines: np.ndarray,
    path: Path,
    spec: TableSpec,
    bounds: Mapping[str, int],
) -> list[Problem]:
    """Vectorised checks on the fields that parsed: id ranges, allowed values, self-loops, duplicate keys."""
    problems: list[Problem] = []
    for column in spec.columns:
        if column.name in frame.columns and column.kind is not Kind.text:
            values, good = frame[column.name].to_numpy(), parsed[column.name]
            problems += _range_problems(values, good, lines, path, spec, column, bounds)
            problems += _allowed_problems(values, good, lines, path, column)
    problems += _self_loop_problems(frame, parsed, lines, path, spec)
    problems += _duplicate_problems(frame, parsed, lines, path, spec)
    return problems


def _range_problems(
    values: np.ndarray,
    good: np.ndarray,
    lines: np.ndarray,
    path: Path,
    spec: TableSpec,
    column: Column,
    bounds: Mapping[str, int],
) -> list[Problem]:
    """Ids outside ``[0, bound)`` for a column bounded by a count of dataset.json."""
    if column.bound is None or column.bound not in bounds:
        return []
    limit = bounds[column.bound]
    problems = []
    for row in np.flatnonzero(good & ((values < 0) | (values >= limit))):
        message = f"id {values[row]} out of range [0, {limit}) ({column.bound} = {limit})"
        if spec.file.endswith("kg.tsv") and column.name in ("head", "tail"):
            message = f"KG entity {values[row]} is never defined (n_entities = {limit})"
        problems.append(Problem(path, int(lines[row]), column.name, message))
    return problems


def _allowed_problems(
    values: np.ndarray, good: np.ndarray, lines: np.ndarray, path: Path, column: Column
) -> list[Problem]:
    """Values outside a column's closed set (labels 0/1)."""
    if column.allowed is None:
        return []
    allowed = "/".join(map(str, column.allowed))
    return [
        Problem(path, int(lines[row]), column.name, f"value {values[row]} is not {allowed}")
        for row in np.flatnonzero(good & ~np.isin(values, column.allowed))
    ]


def _self_loop_problems(
    frame: pd.DataFrame, parsed: dict[str, np.ndarray], lines: np.ndarray, path: Path, spec: TableSpec
) -> list[Problem]:
    """Rows where the two columns of ``spec.distinct`` hold the same id (a user befriending themself)."""
    if spec.distinct is None or not all(name in frame.columns for name in spec.distinct):
        return []
    first, second = spec.distinct
    values = frame[first].to_numpy()
    same = parsed[first] & parsed[second] & (values == frame[second].to_numpy())
    return [
        Problem(path, int(lines[row]), second, f"self-loop: {first} and {second} are both {values[row]}")
        for row in np.flatnonzero(same)
    ]


def _duplicate_problems(
    frame: pd.DataFrame, parsed: dict[str, np.ndarray], lines: np.ndarray, path: Path, spec: TableSpec
) -> list[Problem]:
    """Rows repeating the key of an earlier row, each pointing at the first occurrence (rows whose key parsed)."""
    if not spec.key or not all(k in frame.columns for k in spec.key):
        return []
    keys = list(spec.key)
    whole = np.logical_and.reduce([parsed[k] for k in keys])
    if not whole.all():
        frame, lines = frame[whole].reset_index(drop=True), lines[whole]
    duplicated = frame.duplicated(keys, keep="first").to_numpy()
    if not duplicated.any():
        return []
    positions = pd.Series(np.arange(len(frame)), index=frame.index)
    first_row = positions.groupby([frame[k] for k in keys], sort=False).transform("min").to_numpy()
    return [
        Problem(
            path,
            int(lines[row]),
            ",".join(keys),
            f"duplicate row: same {'/'.join(keys)} as line {int(lines[first_row[row]])}",
        )
        for row in np.flatnonzero(duplicated)
    ]
