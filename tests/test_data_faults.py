"""Fault injection for dataset files (issue 10, item 9): every bad file gives a ``file:line column`` message.

Each test writes a small valid folder, breaks one thing the way a tester did, and asserts the exact message. The last
tests check that the fast reader and the line-by-line reader apply one rule set, and that ``graphrec data validate``
prints these lines and exits 1 without a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.data.dataset import Dataset, load_dataset_dir
from training.data.errors import DatasetError

META = {"name": "tiny", "n_users": 6, "n_items": 5, "n_entities": 8, "n_relations": 2}
RATINGS = [(0, 0, 1), (0, 1, 0), (1, 1, 1), (1, 2, 1), (2, 2, 1), (2, 3, 0)]
TABLES = {
    "interactions.tsv": "user\titem\tlabel\ttimestamp\tweight\n"
    + "".join(f"{u}\t{i}\t{y}\t{1_700_000_000 + n}\t1.5\n" for n, (u, i, y) in enumerate(RATINGS)),
    "kg.tsv": "head\trelation\ttail\n0\t0\t5\n1\t0\t5\n2\t0\t6\n3\t1\t7\n4\t1\t7\n",
    "social.tsv": "user\tfriend\n0\t1\n1\t2\n2\t3\n",
    "tags.tsv": "user\titem\ttag\ttimestamp\n0\t0\trock\t1\n1\t1\tjazz\t2\n",
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A small valid dataset folder, written as text so each test can break exactly one byte of it."""
    target = tmp_path / "tiny"
    target.mkdir()
    (target / "dataset.json").write_text(json.dumps(META, indent=2) + "\n")
    for name, text in TABLES.items():
        (target / name).write_text(text)
    return target


def _replace_line(path: Path, line: int, text: str) -> None:
    """Replace the 1-based ``line`` of a text file."""
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


def _messages(folder: Path) -> list[str]:
    """Every problem the loader reports for ``folder`` as the CLI prints it, folder prefix dropped; [] if it loads."""
    try:
        load_dataset_dir(folder)
    except DatasetError as exc:
        return [str(problem).removeprefix(f"{folder}/") for problem in exc.problems]
    return []


def test_valid_folder_loads(folder: Path) -> None:
    dataset = load_dataset_dir(folder)
    assert (dataset.n_users, len(dataset.interactions), len(dataset.kg), len(dataset.social)) == (6, 6, 5, 3)


def test_case_1_latin1_byte_names_file_line_column_and_byte(folder: Path) -> None:
    (folder / "tags.tsv").write_bytes(b"user\titem\ttag\ttimestamp\n0\t0\trock\t1\n1\t1\tcaf\xe9\t2\n")
    assert _messages(folder) == ["tags.tsv:3 column 'tag': not valid utf-8: byte 0xe9 at byte 8 of the line"]


def test_case_2_underscore_digits_are_not_an_integer(folder: Path) -> None:
    _replace_line(folder / "interactions.tsv", 3, "0\t1_0\t0\t1700000001\t1.5")
    assert _messages(folder) == ["interactions.tsv:3 column 'item': expected an integer, found '1_0'"]


def test_case_3_full_width_digits_are_not_an_integer(folder: Path) -> None:
    _replace_line(folder / "kg.tsv", 2, "0\t0\t１２")
    assert _messages(folder) == ["kg.tsv:2 column 'tail': expected an integer, found '１２'"]


def test_case_4_twenty_digit_id_does_not_fit(folder: Path) -> None:
    _replace_line(folder / "social.tsv", 4, "2\t12345678901234567890")
    assert _messages(folder) == [
        "social.tsv:4 column 'friend': integer does not fit in 64 bits: '12345678901234567890'"
    ]


def test_case_5_weight_nan_and_inf_are_refused(folder: Path) -> None:
    _replace_line(folder / "interactions.tsv", 2, "0\t0\t1\t1700000000\tnan")
    _replace_line(folder / "interactions.tsv", 4, "1\t1\t1\t1700000002\tinf")
    _replace_line(folder / "interactions.tsv", 5, "1\t2\t1\t1700000003\t1e400")
    assert _messages(folder) == [
        "interactions.tsv:2 column 'weight': expected a finite decimal number, found 'nan'",
        "interactions.tsv:4 column 'weight': expected a finite decimal number, found 'inf'",
        "interactions.tsv:5 column 'weight': expected a finite decimal number, found '1e400'",
    ]


def test_case_6_value_checks_run_after_a_parse_error_elsewhere(folder: Path) -> None:
    _replace_line(folder / "interactions.tsv", 2, "0 0 1 1700000000 1.5")
    _replace_line(folder / "interactions.tsv", 3, "0\tx\t0\t1700000001\t1.5")
    _replace_line(folder / "interactions.tsv", 5, "1\t2\t2\t1700000003\t1.5")
    _replace_line(folder / "interactions.tsv", 7, "1\t1\t0\t1700000005\t1.5")
    assert _messages(folder) == [
        "interactions.tsv:2: malformed line: expected 5 fields, found 1",
        "interactions.tsv:3 column 'item': expected an integer, found 'x'",
        "interactions.tsv:5 column 'label': value 2 is not 0/1",
        "interactions.tsv:7 column 'user,item': duplicate row: same user/item as line 4",
    ]


def test_case_7_boolean_is_not_a_count(folder: Path) -> None:
    (folder / "dataset.json").write_text(json.dumps(META | {"n_users": True}, indent=2) + "\n")
    assert _messages(folder) == ["dataset.json:3 column 'n_users': not a non-negative integer: true"]


def test_case_8_header_only_interactions_are_refused(folder: Path) -> None:
    (folder / "interactions.tsv").write_text("user\titem\tlabel\n")
    assert _messages(folder) == ["interactions.tsv:1: the table has 0 data rows; at least 1 needed"]


def test_case_9_byte_order_mark_is_ignored(folder: Path) -> None:
    """Option chosen (docs/DATA_FORMAT.md): a UTF-8 BOM at the start of any file is stripped, never part of a name."""
    plain = load_dataset_dir(folder)
    for path in folder.iterdir():
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    with_bom = load_dataset_dir(folder)
    assert list(with_bom.interactions.columns) == list(plain.interactions.columns)
    assert _same_tables(plain, with_bom)


def _same_tables(first: Dataset, second: Dataset) -> bool:
    """Whether two loads hold the same rows in every table."""
    return all(getattr(first, name).equals(getattr(second, name)) for name in ("interactions", "kg", "social", "tags"))


def test_problems_of_every_file_are_reported_together(folder: Path) -> None:
    (folder / "dataset.json").write_text(json.dumps(META | {"n_relations": -1}, indent=2) + "\n")
    (folder / "tags.tsv").write_bytes(b"user\titem\ttag\ttimestamp\n0\t0\t\xff\t1\n")
    _replace_line(folder / "kg.tsv", 3, "1\t0\t50")
    assert _messages(folder) == [
        "dataset.json:6 column 'n_relations': not a non-negative integer: -1",
        "kg.tsv:3 column 'tail': KG entity 50 is never defined (n_entities = 8)",
        "tags.tsv:2 column 'tag': not valid utf-8: byte 0xff at byte 5 of the line",
    ]


@pytest.mark.parametrize(
    ("timestamp", "weight", "problem"),
    [
        ("3", "1.5", None),
        ("-0", "1.", None),
        ("007", ".5", None),
        ("3", "-2E-3", None),
        ("+3", "1.5", "column 'timestamp': expected an integer, found '+3'"),
        (" 3", "1.5", "column 'timestamp': expected an integer, found ' 3'"),
        ("0x3", "1.5", "column 'timestamp': expected an integer, found '0x3'"),
        ("3.0", "1.5", "column 'timestamp': expected an integer, found '3.0'"),
        ("--3", "1.5", "column 'timestamp': expected an integer, found '--3'"),
        ("", "1.5", "column 'timestamp': expected an integer, found ''"),
        ("9223372036854775808", "1.5", "column 'timestamp': integer does not fit in 64 bits: '9223372036854775808'"),
        ("3", "+1.5", "column 'weight': expected a finite decimal number, found '+1.5'"),
        ("3", "1,5", "column 'weight': expected a finite decimal number, found '1,5'"),
        ("3", "Infinity", "column 'weight': expected a finite decimal number, found 'Infinity'"),
        ("3", "0x1p3", "column 'weight': expected a finite decimal number, found '0x1p3'"),
    ],
)
def test_one_rule_set_with_or_without_a_bad_line_elsewhere(
    folder: Path, timestamp: str, weight: str, problem: str | None
) -> None:
    """A field is judged the same whether the file is read in one pass or, after a bad line, line by line."""
    path = folder / "interactions.tsv"
    _replace_line(path, 2, f"0\t0\t1\t{timestamp}\t{weight}")
    expected = [f"interactions.tsv:2 {problem}"] if problem else []
    assert _messages(folder) == expected
    path.write_text(path.read_text() + "broken line\n")
    assert _messages(folder) == [*expected, "interactions.tsv:8: malformed line: expected 5 fields, found 1"]


def test_cli_validate_prints_file_line_column_and_exits_1(folder: Path, tmp_path: Path) -> None:
    (folder / "tags.tsv").write_bytes(b"user\titem\ttag\ttimestamp\n0\t0\tcaf\xe9\t1\n")
    _replace_line(folder / "interactions.tsv", 3, "0\t1_0\t2\t1700000001\t1.5")
    graphrec = Path(sys.executable).with_name("graphrec")
    args = [str(graphrec), "--dataset", str(folder), "--work-dir", str(tmp_path / "work"), "data", "validate"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"{folder}/interactions.tsv:3 column 'item': expected an integer, found '1_0'" in output
    assert f"{folder}/interactions.tsv:3 column 'label': value 2 is not 0/1" in output
    assert f"{folder}/tags.tsv:2 column 'tag': not valid utf-8: byte 0xe9 at byte 8 of the line" in output
    assert "Traceback" not in output
