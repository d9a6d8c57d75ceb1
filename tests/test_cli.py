"""The CLI reports bad input as a table with file/line/column and writes nothing; good input is summarised."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def test_validate_good_folder(tiny_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["--dataset", str(tiny_dir), "--work-dir", str(tmp_path / "w"), "data", "validate"])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_stats_prints_counts(tiny_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["--dataset", str(tiny_dir), "--work-dir", str(tmp_path / "w"), "data", "stats"])
    assert result.exit_code == 0, result.output
    assert "labelled rows" in result.output and "sparse tercile" in result.output


def test_invalid_data_exits_1_and_keeps_existing_graphs(tiny_dir: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    args = ["--dataset", str(tiny_dir), "--work-dir", str(work), "data", "graph"]
    assert runner.invoke(app, args).exit_code == 0
    saved = {p.name: p.read_bytes() for p in (work / "graphs").iterdir()}
    interactions = tiny_dir / "interactions.tsv"
    interactions.write_text(interactions.read_text() + "0\t77\t1\t5\n")
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert f"{interactions}:12 column 'item'" in result.output
    assert "nothing was written" in result.output
    assert {p.name: p.read_bytes() for p in (work / "graphs").iterdir()} == saved


def test_missing_real_data_explains(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--data-dir", str(tmp_path / "empty"), "data", "validate"])
    assert result.exit_code == 1
    assert "GRAPHREC_DATA_DIR" in result.output


def test_synth_then_validate(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    result = runner.invoke(app, ["data", "synth", "--users", "500", "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["--dataset", str(out), "--work-dir", str(tmp_path / "w"), "data", "validate"])
    assert result.exit_code == 0, result.output
