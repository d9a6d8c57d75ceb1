"""The features verbs end to end through the CLI: build -> apply -> materialize -> get equals the parquet value;
training-set joins point in time; invalid families are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from feature_repo.catalog import USER_TRANSH
from cli.main import app
from graphrec.settings import Settings
from featurestore.offline import read_latest
from featurestore.store import online_features

runner = CliRunner()


def test_build_apply_materialize_get(tmp_path: Path) -> None:
    from training.synth.generator import SynthConfig, generate_dataset

    generate_dataset(SynthConfig(n_users=300, seed=2), tmp_path / "data")
    base = ["--dataset", str(tmp_path / "data"), "--work-dir", str(tmp_path / "work")]
    for command in (["features", "build", "--epochs", "2"], ["features", "apply"], ["features", "materialize"]):
        result = runner.invoke(app, base + command)
        assert result.exit_code == 0, (command, result.output, result.exception)
    settings = Settings(dataset=str(tmp_path / "data"), work_dir=tmp_path / "work")
    parquet = read_latest(settings, USER_TRANSH).set_index("user_id").loc[0, "transh"]
    online = online_features(settings, user_id=0)["user_transh__transh"]
    np.testing.assert_array_equal(np.asarray(online, dtype=np.float32), parquet)
    shown = runner.invoke(app, base + ["features", "get", "--user", "0", "--item", "1"])
    assert shown.exit_code == 0 and "user_graph_stats__ui_degree" in shown.output and "item_transh__transh" in shown.output
    out = tmp_path / "train.parquet"
    joined = runner.invoke(app, base + ["features", "training-set", "--out", str(out)])
    assert joined.exit_code == 0, joined.output
    frame = pd.read_parquet(out)
    assert {"label", "user_transh__transh", "item_graph_stats__popularity"} <= set(frame.columns)


def test_unknown_family_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--work-dir", str(tmp_path), "features", "build", "--only", "colour"])
    assert result.exit_code == 2 and "unknown feature families ['colour']" in result.output
