"""The features verbs end to end through the CLI: build -> apply -> materialize -> get equals the parquet value;
--json prints every value in full; training-set joins point in time; invalid families are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from cli.main import app
from feature_repo.catalog import USER_TRANSH
from featurestore.offline import read_latest
from featurestore.store import online_features
from graphrec.settings import Settings

runner = CliRunner()


def test_build_apply_materialize_get(tmp_path: Path) -> None:
    from training.synth.generator import SynthConfig, generate_dataset

    generate_dataset(SynthConfig(n_users=300, seed=2), tmp_path / "data")
    base = ["--dataset", str(tmp_path / "data"), "--work-dir", str(tmp_path / "work")]
    for command in (["features", "build", "--epochs", "2"], ["features", "apply"], ["features", "materialize"]):
        result = runner.invoke(app, base + command)
        assert result.exit_code == 0, (command, result.output, result.exception)
    settings = Settings(dataset=str(tmp_path / "data"), work_dir=tmp_path / "work")
    parquet = read_latest(settings.offline_dir, USER_TRANSH).set_index("user_id").loc[0, "transh"]
    online = online_features(settings, user_id=0)["user_transh__transh"]
    np.testing.assert_array_equal(np.asarray(online, dtype=np.float32), parquet)
    shown = runner.invoke(app, base + ["features", "get", "--user", "0", "--item", "1"], env={"COLUMNS": "80"})
    assert shown.exit_code == 0, shown.output
    assert "user_graph_stats__ui_degree" in shown.stdout and "item_transh__transh" in shown.stdout
    assert "…" not in shown.stdout and max(len(line) for line in shown.stdout.splitlines()) <= 80
    document = json.loads(runner.invoke(app, base + ["features", "get", "--user", "0", "--item", "1", "--json"]).stdout)
    assert document["user_id"] == 0 and document["item_id"] == 1
    np.testing.assert_array_equal(np.asarray(document["features"]["user_transh__transh"], dtype=np.float32), parquet)
    degree = online_features(settings, user_id=0)["user_graph_stats__ui_degree"]
    assert document["features"]["user_graph_stats__ui_degree"] == degree and isinstance(degree, int)
    out = tmp_path / "train.parquet"
    joined = runner.invoke(app, base + ["features", "training-set", "--out", str(out)])
    assert joined.exit_code == 0, joined.output
    frame = pd.read_parquet(out)
    assert {"label", "user_transh__transh", "item_graph_stats__popularity"} <= set(frame.columns)


def test_unknown_family_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--work-dir", str(tmp_path), "features", "build", "--only", "colour"])
    assert result.exit_code == 2 and "unknown feature families ['colour']" in result.output
