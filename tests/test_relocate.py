"""A copied work dir serves from its own files once relocated (issue 10, item 11): ``graphrec work relocate`` rewrites
every path MLflow and Feast stored under the original, and the original can be gone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cli.main import app
from featurestore.config import write_cli_config
from graphrec.relocation import Move
from graphrec.settings import Settings
from serving.app import create_app
from serving.pyfunc_model import ITEM_ID
from tests.support.serving import dot_tables, popularity_table, publish_dot_version

runner = CliRunner()
STORED = ("mlflow.db", "feast_registry.db", "feature_store.yaml")


def relocate(work: Path, *args: str) -> dict:
    """``graphrec --work-dir WORK work relocate --json ARGS``: its JSON answer."""
    result = runner.invoke(app, ["--work-dir", str(work), "work", "relocate", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def referencing(work: Path, old: Path) -> list[str]:
    """Files under ``work`` whose bytes still name ``old`` as a folder, but logged models' MLmodel files: registered
    artefacts are kept byte for byte, and their ``artifact_path`` is never used to load (registry/relocation.py)."""
    needle = f"{old}/".encode()
    files = [path for path in work.rglob("*") if path.is_file() and path.name != "MLmodel"]
    return [str(path.relative_to(work)) for path in files if needle in path.read_bytes()]


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(old, copy): a served work dir with a champion and materialized features, copied, the original renamed away."""
    root = tmp_path_factory.mktemp("relocate")
    original = Settings(work_dir=root / "work")
    users, items = dot_tables(10, 12, 4, seed=0)
    publish_dot_version(original, users, items, popularity_table(items[ITEM_ID].to_numpy(), seed=0))
    write_cli_config(original)
    copy = root / "copy"
    shutil.copytree(original.work_dir, copy)
    original.work_dir.rename(root / "moved-away")
    return original.work_dir, copy


def test_relocated_copy_serves_from_its_own_files(moved: tuple[Path, Path]) -> None:
    old, copy = moved
    assert set(STORED) <= set(referencing(copy, old))  # a plain copy still names the original's files
    report = relocate(copy)
    assert report["from"] == str(old) and report["work_dir"] == str(copy)
    rewritten = {(r["file"], r["item"]) for r in report["rewrites"]}
    mlflow_paths = {"experiments.artifact_location", "runs.artifact_uri", "model_versions.storage_location"}
    assert {("mlflow.db", item) for item in mlflow_paths} <= rewritten
    assert {("feast_registry.db", "data_sources"), ("feast_registry.db", "feature_views")} <= rewritten
    assert referencing(copy, old) == []
    with TestClient(create_app(Settings(work_dir=copy), poll=False), raise_server_exceptions=False) as client:
        response = client.post("/v1/predict", json={"user_id": 1, "item_ids": [0, 1, 2]})
    assert response.status_code == 200, response.text
    assert relocate(copy)["rewrites"] == []  # idempotent: nothing left under the old location
    assert relocate(copy, "--from", str(old))["rewrites"] == []


def test_relocate_refuses_a_folder_that_is_not_a_work_dir(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--work-dir", str(tmp_path), "work", "relocate"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"error: {tmp_path} is not a graphrec work dir" in " ".join(result.stderr.split())


def test_relocate_refuses_a_move_into_the_old_location(moved: tuple[Path, Path]) -> None:
    _, copy = moved
    result = runner.invoke(app, ["--work-dir", str(copy), "work", "relocate", "--from", str(copy.parent)])
    assert result.exit_code == 1, result.output
    assert "a work dir cannot be relocated into its own old location" in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("file:///a/work/mlartifacts/x", "file:///b/w/mlartifacts/x"),
        ("sqlite:////a/work/mlflow.db", "sqlite:////b/w/mlflow.db"),
        ("/a/work", "/b/w"),
        ('{"path": "/a/work"}', '{"path": "/b/w"}'),
        ("/a/work2/x /a/work.bak /x/a/work/y", "/a/work2/x /a/work.bak /x/a/work/y"),
    ],
    ids=["file-uri", "sqlite-uri", "whole", "quoted", "longer-names-untouched"],
)
def test_move_rewrites_whole_path_prefixes_only(text: str, expected: str) -> None:
    assert Move(Path("/a/work"), Path("/b/w")).rewrite(text) == expected


def test_move_rewrites_uri_quoted_paths() -> None:
    move = Move(Path("/a/my work"), Path("/b/new place"))
    assert move.rewrite("file:///a/my%20work/x and /a/my work/y") == "file:///b/new%20place/x and /b/new place/y"
