"""The topic commands and the user_intent view end to end through the CLI: features build --only intent ->
apply -> materialize -> get shows the mixture the parquet holds; topics show / audience read the same fit; topics
train logs to MLflow; unusable input gives one line naming what is wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from feature_repo.catalog import USER_INTENT
from featurestore.offline import read_latest
from graphrec.settings import Settings
from tests.support.datasets import synthetic_dataset
from training.data.dataset import write_dataset

runner = CliRunner()
K = 4
FAST = ["--topic-epochs", "20"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Settings]:
    """A seeded synthetic dataset (it has tags and friendships) with every feature family built, applied and
    materialized: the command-line prefix and the settings."""
    from training.synth.generator import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("topics-cli")
    generate_dataset(SynthConfig(n_users=200, seed=3), root / "data")
    base = ["--dataset", str(root / "data"), "--work-dir", str(root / "work")]
    for command in (["features", "build", "--epochs", "1", *FAST], ["features", "apply"], ["features", "materialize"]):
        result = runner.invoke(app, base + command)
        assert result.exit_code == 0, (command, result.output, result.exception)
    return base, Settings(dataset=str(root / "data"), work_dir=root / "work")


def test_intent_view_round_trips_through_feast(world: tuple[list[str], Settings]) -> None:
    base, settings = world
    snapshot = read_latest(settings.offline_dir, USER_INTENT).set_index("user_id").sort_index()
    theta = np.stack(snapshot["theta"].to_numpy())
    assert theta.shape == (200, 16)
    np.testing.assert_allclose(theta.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(snapshot["dominant_topic"].to_numpy(), theta.argmax(axis=1))
    shown = runner.invoke(app, base + ["features", "get", "--user", "7", "--json"])
    assert shown.exit_code == 0, shown.output
    features = json.loads(shown.stdout)["features"]
    np.testing.assert_array_equal(np.asarray(features["user_intent__theta"], dtype=np.float32), theta[7])
    assert features["user_intent__dominant_topic"] == int(theta[7].argmax())
    assert features["user_intent__dominant_weight"] == pytest.approx(float(theta[7].max()), rel=1e-6)


def test_show_and_audience_read_the_served_fit(world: tuple[list[str], Settings], tmp_path: Path) -> None:
    base, settings = world
    shown = runner.invoke(app, base + ["topics", "show", "--json"])
    assert shown.exit_code == 0, shown.output
    topics = json.loads(shown.stdout)["topics"]
    assert len(topics) == 16 and sum(t["size"] for t in topics) == 200
    table = runner.invoke(app, base + ["topics", "show"], env={"COLUMNS": "80"})
    assert table.exit_code == 0 and max(len(line) for line in table.stdout.splitlines()) <= 80
    out = tmp_path / "audience.csv"
    written = runner.invoke(app, base + ["topics", "audience", "--topic", "3", "--top", "10", "--out", str(out)])
    assert written.exit_code == 0, written.output
    frame = pd.read_csv(out)
    served = np.stack(read_latest(settings.offline_dir, USER_INTENT).set_index("user_id").sort_index()["theta"])
    assert len(frame) == 10 and frame["theta"].is_monotonic_decreasing
    np.testing.assert_allclose(frame["theta"], served[frame["user_id"], 3], rtol=1e-6)  # the served mixture
    assert frame["theta"].iloc[-1] >= np.sort(served[:, 3])[-10] - 1e-7  # nobody left out ranks higher
    assert set(frame["activity_tercile"]) <= {"sparse", "medium", "active"}
    refused = runner.invoke(app, base + ["topics", "audience", "--topic", "16", "--out", str(out)])
    assert refused.exit_code == 1 and "--topic 16 is out of range: the model has 16 topics, 0 to 15" in refused.output


def test_every_source_gives_the_served_topics(world: tuple[list[str], Settings]) -> None:
    base, _ = world
    shown = {
        source: json.loads(runner.invoke(app, base + ["topics", "show", "--source", source, "--json"]).stdout)
        for source in ("online", "offline", "fit")
    }
    assert shown["online"]["source"] == "online"
    assert shown["online"]["topics"] == shown["offline"]["topics"] == shown["fit"]["topics"]


def test_an_unmaterialized_store_is_named(world: tuple[list[str], Settings], tmp_path: Path) -> None:
    base, settings = world
    work = tmp_path / "work"
    shutil.copytree(settings.work_dir / "topics", work / "topics")  # a fit, but no view built or materialized
    fresh = [base[0], base[1], "--work-dir", str(work)]
    audience = ["topics", "audience", "--topic", "1", "--out", str(tmp_path / "a.csv")]
    unapplied = runner.invoke(app, fresh + audience)
    assert unapplied.exit_code == 1 and "run `graphrec features apply`" in unapplied.output
    assert runner.invoke(app, fresh + ["features", "apply"]).exit_code == 0
    for source in ("online", "offline"):
        refused = runner.invoke(app, fresh + audience + ["--source", source])
        assert refused.exit_code == 1, refused.output
        named = f"200 of 200 users (user_id 0, 1, 2, 3, 4, ...) have no user_intent mixture in the {source} store"
        assert named in refused.output
    assert not (tmp_path / "a.csv").exists()


def test_train_logs_the_fit_to_mlflow(world: tuple[list[str], Settings]) -> None:
    import mlflow

    base, settings = world
    trained = runner.invoke(app, base + ["topics", "train", "--topics", str(K), "--epochs", "10", "--json"])
    assert trained.exit_code == 0, trained.output
    document = json.loads(trained.stdout)
    assert len(document["top_words"]) == K and document["mlflow_run"]
    client = mlflow.MlflowClient(settings.mlflow_uri)
    run = client.get_run(document["mlflow_run"])
    assert run.data.params["config.n_topics"] == str(K) and run.data.tags["graphrec.kind"] == "topics"
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"top_words.json", "model"}
    shown = json.loads(runner.invoke(app, base + ["topics", "show", "--source", "fit", "--json"]).stdout)
    assert len(shown["topics"]) == K  # show reads the latest fit
    stale = runner.invoke(app, base + ["topics", "show"])  # the online store still serves the 16-topic build
    assert stale.exit_code == 1 and "the online store serves 16 topics per user but the saved fit" in stale.output


def test_evaluate_writes_the_report_and_logs_it(world: tuple[list[str], Settings], tmp_path: Path) -> None:
    import mlflow

    base, settings = world
    out = tmp_path / "topics.md"
    evaluated = runner.invoke(
        app, base + ["topics", "evaluate", "--out", str(out), "--topics", "3", "--epochs", "5", "--json"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    document = json.loads(evaluated.stdout)
    names = [r["name"] for r in document["results"]]
    assert names == ["full (GNN + embedded decoder)", "no GNN", "free decoder", "sklearn LDA"]
    for result in document["results"]:
        assert set(result["groups"]) == {"all", "sparse", "medium", "active"}
        assert result["groups"]["all"]["perplexity"] > 1 and -1 <= result["npmi"] <= 1
    text = out.read_text()
    typed = " ".join(["graphrec", *base, "topics evaluate --out", str(out), "--topics 3 --epochs 5 --json"])
    assert f"Made by `{typed}`" in text and all(f"| {name} |" in text for name in names)
    assert "## Activity tercile: sparse" in text and "KG tokens on" not in text
    with_kg = runner.invoke(
        app,
        base
        + ["topics", "evaluate", "--out", str(tmp_path / "kg.md"), "--topics", "3", "--epochs", "5"]
        + ["--kg-tokens", "--no-track"],
    )
    assert with_kg.exit_code == 0, with_kg.output
    assert "KG tokens on" in (tmp_path / "kg.md").read_text()
    run = mlflow.MlflowClient(settings.mlflow_uri).get_run(document["mlflow_run"])
    assert run.data.metrics["sklearn_LDA.all.perplexity"] == pytest.approx(
        document["results"][3]["groups"]["all"]["perplexity"]
    )


def test_unusable_input_is_named(tmp_path: Path) -> None:
    write_dataset(synthetic_dataset(), tmp_path / "untagged")  # no tags.tsv
    base = ["--dataset", str(tmp_path / "untagged"), "--work-dir", str(tmp_path / "work")]
    nothing = runner.invoke(app, base + ["topics", "show"])
    assert nothing.exit_code == 1 and "no fitted topic model" in nothing.output
    assert "graphrec topics train" in nothing.output
    train = runner.invoke(app, base + ["topics", "train", "--no-track"])
    assert train.exit_code == 1 and "dataset 'synthetic' has no tag assignments" in train.output
    build = runner.invoke(app, base + ["features", "build", "--only", "intent", *FAST])
    assert build.exit_code == 1 and "has no tag assignments" in build.output
