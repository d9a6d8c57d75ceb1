"""The CLI reports bad input with file/line/column and writes nothing; good input is summarised. Tables fit 80
columns without cutting a value; --json prints one parseable document with the same values."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from cli.main import app
from cli.models import DEFAULT_METRICS
from graphrec.settings import Settings
from graphrec.warnings import silence_benign_warnings
from registry.promotion import AUDIT_PREFIX, AuditEntry
from registry.versions import KEY_METRICS
from serving.client import ServingClient
from serving.contract import CHAMPION, FEATURE_SERVICE_TAG, MODEL_KIND_TAG
from serving.schemas import ModelRef, ScoredItem, ScoresResponse

runner = CliRunner()


def test_validate_good_folder(tiny_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["--dataset", str(tiny_dir), "--work-dir", str(tmp_path / "w"), "data", "validate"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("valid: "), result.output


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


def test_stats_json_is_one_document_with_the_table_values(tiny_dir: Path, tmp_path: Path) -> None:
    base = ["--dataset", str(tiny_dir), "--work-dir", str(tmp_path / "w"), "data", "stats"]
    result = runner.invoke(app, [*base, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    counts, split = summary["counts"], summary["split"]
    assert split["train"] + split["valid"] + split["test"] == counts["labelled rows"] > 0
    assert set(summary["activity"]["terciles"]) == {"sparse", "medium", "active"}
    assert isinstance(summary["activity"]["median"], float) and isinstance(summary["ckg"]["nodes"], int)
    table = runner.invoke(app, base).stdout
    assert f"{counts['labelled rows']:,}" in table and f"{split['train']:,}" in table
    for name, tercile in summary["activity"]["terciles"].items():
        assert f"{name} tercile" in table and f"{tercile['users']:,} / {tercile['mean_positives']:.1f}" in table


NAME = "graphrec-cli"
# version -> (model kind, test metrics); v2 is champion, v1 challenger, v3 holds no alias
VERSIONS = {
    "1": (
        "ripplenet",
        {
            "test_auc": 0.81234567,
            "test_f1": 0.74455,
            "test_auc/sparse": 0.70987654,
            "test_recall_at_20": 0.12345678,
            "test_recall_at_20/sparse": 0.09876543,
        },
    ),
    "2": (
        "kcan",
        {
            "test_auc": 0.83219876,
            "test_f1": 0.76011,
            "test_auc/sparse": 0.75432109,
            "test_recall_at_20": 0.14567891,
            "test_recall_at_20/sparse": 0.11223344,
        },
    ),
    "3": (
        "bpr_mf",
        {
            "test_auc": 0.78,
            "test_f1": 0.7,
            "test_auc/sparse": 0.66,
            "test_recall_at_20": 0.1,
            "test_recall_at_20/sparse": 0.05,
        },
    ),
}
GATE = {"candidate_auc": 0.83219876, "champion_auc": None, "tolerance": 0.005}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """An MLflow registry (no model artefacts: listing and showing read only the registry and run metrics) with
    three versions of known metrics, two aliases and one audit entry; returns the CLI's global options for it."""
    work = tmp_path_factory.mktemp("cli-registry")
    settings = Settings(work_dir=work, registered_model_name=NAME)
    client = MlflowClient(settings.mlflow_uri, settings.mlflow_uri)
    experiment = client.create_experiment("cli", artifact_location=(work / "artifacts").as_uri())
    client.create_registered_model(NAME)
    for version, (kind, metrics) in VERSIONS.items():
        run = client.create_run(experiment).info.run_id
        for key, value in metrics.items():
            client.log_metric(run, key, value)
        created = client.create_model_version(
            NAME,
            f"runs:/{run}/model",
            run_id=run,
            tags={MODEL_KIND_TAG: kind, FEATURE_SERVICE_TAG: f"graphrec_cli_v{version}"},
        )
        assert str(created.version) == version
    client.set_registered_model_alias(NAME, "challenger", "1")
    client.set_registered_model_alias(NAME, CHAMPION, "2")
    entry = AuditEntry(
        alias=CHAMPION,
        from_version=None,
        to_version="2",
        who="tester",
        when="2026-01-02T03:04:05+00:00",
        action="promote",
        reason="first champion",
        gate=GATE,
    )
    client.set_registered_model_tag(NAME, f"{AUDIT_PREFIX}00001", json.dumps(asdict(entry)))
    return ["--work-dir", str(work)]


def _metric_cells(version: str, keys: tuple[str, ...]) -> list[str]:
    return [f"{VERSIONS[version][1][key]:.4f}" for key in keys]


def _row(output: str, version: str) -> str:
    """The table line whose first cell is ``version``."""
    return next(line for line in output.splitlines() if "│" in line and line.split("│")[1].strip() == version)


def test_models_list_at_80_columns_shows_every_alias_and_metric_in_full(registry: list[str]) -> None:
    result = runner.invoke(app, [*registry, "models", "list", NAME], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in result.stdout
    for version, (kind, _) in VERSIONS.items():
        row = _row(result.stdout, version)
        for cell in [kind, *_metric_cells(version, DEFAULT_METRICS)]:
            assert f" {cell} " in row, (cell, row)
    assert " champion " in _row(result.stdout, "2") and " challenger " in _row(result.stdout, "1")


def test_models_list_wide_adds_f1_feature_service_and_run(registry: list[str]) -> None:
    result = runner.invoke(app, [*registry, "models", "list", NAME, "--wide"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    for version in VERSIONS:
        row = _row(result.stdout, version)
        for cell in [*_metric_cells(version, KEY_METRICS), f"graphrec_cli_v{version}"]:
            assert f" {cell} " in row, (cell, row)


def test_models_list_and_show_json(registry: list[str]) -> None:
    listed = runner.invoke(app, [*registry, "models", "list", NAME, "--json"])
    assert listed.exit_code == 0, listed.output
    document = json.loads(listed.stdout)
    assert document["name"] == NAME and [v["version"] for v in document["versions"]] == ["3", "2", "1"]
    by_version = {v["version"]: v for v in document["versions"]}
    for version, (kind, metrics) in VERSIONS.items():
        assert by_version[version]["model"] == kind and by_version[version]["metrics"] == metrics
        datetime.fromisoformat(by_version[version]["created"])
    assert by_version["2"]["aliases"] == [CHAMPION] and by_version["1"]["aliases"] == ["challenger"]
    assert by_version["3"]["aliases"] == []

    shown = runner.invoke(app, [*registry, "models", "show", f"{NAME}@{CHAMPION}", "--json"])
    assert shown.exit_code == 0, shown.output
    details = json.loads(shown.stdout)
    assert details["version"] == "2" and details["aliases"] == [CHAMPION]
    assert details["metrics"] == VERSIONS["2"][1] and details["tags"][MODEL_KIND_TAG] == "kcan"
    assert details["audit_trail"] == [
        {
            "alias": CHAMPION,
            "from_version": None,
            "to_version": "2",
            "who": "tester",
            "when": "2026-01-02T03:04:05+00:00",
            "action": "promote",
            "reason": "first champion",
            "gate": GATE,
        }
    ]


def test_models_show_at_80_columns(registry: list[str]) -> None:
    result = runner.invoke(app, [*registry, "models", "show", f"{NAME}/2"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80 and "…" not in result.stdout
    assert "2026-01-02 03:04" in result.stdout and "- -> 2" in result.stdout and "first champion" in result.stdout
    for cell in _metric_cells("2", tuple(VERSIONS["2"][1])):
        assert cell in result.stdout
    wide = runner.invoke(app, [*registry, "models", "show", f"{NAME}/2", "--wide"], env={"COLUMNS": "80"})
    assert json.dumps(GATE) in wide.stdout


def test_predict_json_is_the_service_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = ScoresResponse(
        request_id="0123abcd",
        arm=CHAMPION,
        model=ModelRef(name=NAME, version="2", alias=CHAMPION),
        scores=[
            ScoredItem(item_id=7, score=1.25, rank=1, source="model"),
            ScoredItem(item_id=3, score=-0.5, rank=2, source="model"),
        ],
    )
    asked: list[tuple[int, list[int]]] = []

    def predict(self: ServingClient, user_id: int, item_ids: list[int], explain: bool = False) -> ScoresResponse:
        asked.append((user_id, list(item_ids)))
        return answer

    monkeypatch.setattr(ServingClient, "predict", predict)
    result = runner.invoke(app, ["predict", "--user", "5", "--items", "3,7", "--json"])
    assert result.exit_code == 0, result.output
    assert asked == [(5, [3, 7])]
    assert ScoresResponse.model_validate(json.loads(result.stdout)) == answer
    table = runner.invoke(app, ["predict", "--user", "5", "--items", "3,7"], env={"COLUMNS": "80"})
    assert "1.2500" in table.stdout and "-0.5000" in table.stdout and "user 5" in table.stdout


def test_only_the_known_benign_warnings_are_silenced() -> None:
    noload = "The ``noload`` loader strategy is deprecated and will be removed in a future release."
    with warnings.catch_warnings(record=True) as shown:
        # Feast's import puts simplefilter("once", DeprecationWarning) ahead of earlier filters; "always" here makes
        # every call below reach the hook, the same text from two places included
        warnings.simplefilter("always", DeprecationWarning)
        silence_benign_warnings()
        silence_benign_warnings()
        warnings.warn_explicit(noload, DeprecationWarning, "/venv/site-packages/mlflow/store/tracking/store.py", 327)
        warnings.warn_explicit(noload, DeprecationWarning, "/repo/registry/versions.py", 1)
        warnings.warn_explicit("another deprecation", DeprecationWarning, "/venv/site-packages/mlflow/store/x.py", 2)
        no_example = "\x1b[1;33mAn input example was not provided when logging the model. To ensure ...\x1b[0m"
        warnings.warn_explicit(no_example, UserWarning, "/venv/site-packages/mlflow/pyfunc/__init__.py", 3345)
    assert [(str(w.message), w.filename) for w in shown] == [
        (noload, "/repo/registry/versions.py"),
        ("another deprecation", "/venv/site-packages/mlflow/store/x.py"),
    ]
