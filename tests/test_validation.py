"""Every class of bad record is reported with file, line and column; invalid input writes nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from training.data.dataset import load_dataset_dir
from training.data.errors import DataNotFoundError, DatasetError


def _rewrite(path: Path, edit) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def _problems(folder: Path) -> list:
    with pytest.raises(DatasetError) as raised:
        load_dataset_dir(folder)
    return raised.value.problems


def _only(problems: list, file: str):
    matching = [p for p in problems if p.file.name == file]
    assert matching, problems
    return matching


def test_valid_folder_loads(tiny_dir: Path) -> None:
    dataset = load_dataset_dir(tiny_dir)
    assert dataset.n_users == 6 and len(dataset.interactions) == 10 and len(dataset.social) == 4
    assert re.fullmatch(r"[0-9a-f]{16}", dataset.fingerprint), dataset.fingerprint  # a content hash, not a placeholder


def test_missing_column_names_the_column(tiny_dir: Path) -> None:
    _rewrite(tiny_dir / "interactions.tsv", lambda lines: [line.replace("label", "lable") for line in lines])
    problems = _only(_problems(tiny_dir), "interactions.tsv")
    assert {(p.line, p.column) for p in problems} >= {(1, "label"), (1, "lable")}
    assert any("missing" in p.message for p in problems)


def test_non_integer_id(tiny_dir: Path) -> None:
    _rewrite(tiny_dir / "kg.tsv", lambda lines: lines[:3] + ["x1\t0\t5"] + lines[4:])
    (problem,) = _only(_problems(tiny_dir), "kg.tsv")
    assert (problem.line, problem.column) == (4, "head")
    assert "integer" in problem.message and "x1" in problem.message


def test_id_out_of_range(tiny_dir: Path) -> None:
    _rewrite(tiny_dir / "interactions.tsv", lambda lines: lines + ["9\t0\t1\t1"])
    (problem,) = _only(_problems(tiny_dir), "interactions.tsv")
    assert (problem.line, problem.column) == (12, "user")
    assert "out of range" in problem.message


def test_kg_entity_never_defined(tiny_dir: Path) -> None:
    _rewrite(tiny_dir / "kg.tsv", lambda lines: lines + ["0\t1\t42"])
    (problem,) = _only(_problems(tiny_dir), "kg.tsv")
    assert (problem.line, problem.column) == (8, "tail")
    assert "never defined" in problem.message


def test_duplicate_row_points_at_first(tiny_dir: Path) -> None:
    _rewrite(tiny_dir / "social.tsv", lambda lines: lines + [lines[2]])
    (problem,) = _only(_problems(tiny_dir), "social.tsv")
    assert problem.line == 6 and problem.message.endswith("as line 3"), problem.message


def test_label_not_binary(tiny_dir: Path) -> None:
    _rewrite(
        tiny_dir / "interactions.tsv", lambda lines: lines[:1] + [lines[1].replace("\t1\t", "\t2\t", 1)] + lines[2:]
    )
    (problem,) = _only(_problems(tiny_dir), "interactions.tsv")
    assert (problem.line, problem.column) == (2, "label")


def test_malformed_line_and_all_problems_reported(tiny_dir: Path) -> None:
    _rewrite(tiny_dir / "interactions.tsv", lambda lines: lines[:2] + ["0 1 1"] + lines[2:] + ["3\tseven\t1\t5"])
    problems = _only(_problems(tiny_dir), "interactions.tsv")
    assert [(p.line, p.column) for p in problems] == [(3, None), (13, "item")]
    assert "malformed" in problems[0].message


def test_self_loop_in_social(tiny_dir: Path) -> None:
    _rewrite(tiny_dir / "social.tsv", lambda lines: lines + ["4\t4"])
    (problem,) = _only(_problems(tiny_dir), "social.tsv")
    assert problem.line == 6 and "self-loop" in problem.message


def test_bad_counts_in_metadata(tiny_dir: Path) -> None:
    meta = json.loads((tiny_dir / "dataset.json").read_text())
    meta["n_users"] = "six"
    (tiny_dir / "dataset.json").write_text(json.dumps(meta))
    (problem,) = _problems(tiny_dir)
    assert problem.column == "n_users"


def test_missing_folder_says_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as raised:
        load_dataset_dir(tmp_path / "nowhere")
    assert "interactions.tsv" in str(raised.value) and "DATA_FORMAT" in str(raised.value)


def test_problem_str_has_file_line_column(tiny_dir: Path) -> None:
    _rewrite(tiny_dir / "kg.tsv", lambda lines: lines + ["0\t9\t5"])
    with pytest.raises(DatasetError) as raised:
        load_dataset_dir(tiny_dir)
    assert f"{tiny_dir / 'kg.tsv'}:8 column 'relation'" in str(raised.value)
