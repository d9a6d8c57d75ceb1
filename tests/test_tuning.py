"""The fair protocol of issue 11: declared search spaces, a tiny seeded Optuna study on validation AUC tracked in
MLflow whose best config train then uses, both training regimes as separate report rows, and the top-K 8:1:1 split
(each model's step under both regimes: test_models.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import typer
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from cli import train as train_cli
from graphrec.settings import Settings
from tests.support.datasets import synthetic_dataset
from training.data.dataset import write_dataset
from training.data.splits import holdout_split
from training.evaluation.harness import evaluate_models
from training.evaluation.metrics import topk_metrics
from training.evaluation.report import results_markdown
from training.models.base import MODELS, Batch, ModelConfig, Recommender, load_models
from training.trainer import fit, prepare_data
from training.tuning import search_spaces, starting_point, tune

load_models()
pytestmark = pytest.mark.usefixtures("single_thread")
TRAINABLE = sorted(name for name in MODELS if name != "popularity")


def test_every_trainable_model_declares_a_space_of_its_own_config_fields() -> None:
    spaces = search_spaces()
    assert sorted(spaces) == TRAINABLE
    for name, space in spaces.items():
        fields = set(MODELS[name].Config.model_fields)
        assert set(space) <= fields, f"{name}: {set(space) - fields} are not config fields"
        assert not {"loss", "epochs", "patience"} & set(space), f"{name} searches a condition every study shares"
        assert {"lr", "weight_decay", "dim"} <= set(space)
        defaults = MODELS[name].Config()
        moved = {
            field: value
            for field, value in starting_point(defaults, space).items()
            if value != getattr(defaults, field)
        }
        assert set(starting_point(defaults, space)) == set(space), f"{name}: a default choice the space lacks"
        assert moved == ({"weight_decay": 1e-7} if name == "ripplenet" else {}), f"{name}: defaults outside the space"


def test_the_first_trial_is_the_starting_config() -> None:
    """A study's trial 0 trains the starting config itself, so tuning cannot end below it on validation."""
    data = prepare_data(synthetic_dataset(), seed=3)
    base = MODELS["bpr_mf"].Config(lr=0.02, dim=32, epochs=1)
    study = tune("bpr_mf", data, n_trials=2, seed=3, epochs=1, patience=1, base=base)
    assert study.trials[0].params == {"lr": 0.02, "weight_decay": base.weight_decay, "dim": 32, "batch_size": 1024}
    assert study.trials[1].params != study.trials[0].params


def _app(tmp_path: Path, mlflow_uri: str) -> typer.Typer:
    write_dataset(synthetic_dataset(), tmp_path / "synthetic")
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = Settings(
            dataset=str(tmp_path / "synthetic"), work_dir=tmp_path / "work", mlflow_tracking_uri=mlflow_uri
        )

    app.command("tune")(train_cli.tune)
    app.command("train")(train_cli.train)
    app.command("evaluate")(train_cli.evaluate)
    return app


def test_tiny_study_maximises_validation_auc_tracks_trials_and_train_uses_the_best(
    tmp_path: Path, shared_mlflow_uri: str
) -> None:
    app, tuned_dir, runner = _app(tmp_path, shared_mlflow_uri), tmp_path / "tuned", CliRunner()
    args = ["tune", "--model", "bpr_mf", "--trials", "3", "--epochs", "2", "--patience", "1", "--seed", "3"]
    tuned = runner.invoke(app, [*args, "--tuned-dir", str(tuned_dir), "--json"])
    assert tuned.exit_code == 0, tuned.output
    result = json.loads(tuned.stdout)
    document = yaml.safe_load((tuned_dir / "bpr_mf.bpr.yaml").read_text())
    assert Path(result["path"]) == tuned_dir / "bpr_mf.bpr.yaml"
    assert document["study"]["n_trials"] == 3 and document["study"]["regime"] == "bpr"

    client = MlflowClient(shared_mlflow_uri)
    parent = client.get_run(result["run_id"])
    trials = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(trials) == 3
    trial_auc = {run.info.run_name: run.data.metrics["best_valid_auc"] for run in trials}
    assert len(set(trial_auc.values())) > 1, "the trials should differ, else best-of-three proves nothing"
    best_name = max(trial_auc, key=trial_auc.get)
    assert document["study"]["best_valid_auc"] == pytest.approx(max(trial_auc.values()))
    assert best_name == f"trial-{document['study']['best_trial']}"
    best_run = next(run for run in trials if run.info.run_name == best_name)
    assert {k: str(v) for k, v in result["best_params"].items()} == best_run.data.params
    config = document["config"]
    assert config["epochs"] == 2 and config["patience"] == 1
    assert {k: config[k] for k in result["best_params"]} == result["best_params"]

    # the objective is fit's validation AUC of that config, on the tuning seed's split (test never read)
    data = prepare_data(synthetic_dataset(), seed=3)
    refit = fit("bpr_mf", data, MODELS["bpr_mf"].Config.model_validate(config), seed=3)
    assert refit.best_valid_auc == pytest.approx(max(trial_auc.values()))

    trained = runner.invoke(app, ["train", "--model", "bpr_mf", "--tuned-dir", str(tuned_dir), "--json"])
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["config"] == config
    assert "bpr_mf.bpr.yaml" in json.loads(trained.stdout)["config_source"]

    out = tmp_path / "RESULTS.md"
    evaluate = ["evaluate", "--models", "bpr_mf", "--seeds", "1", "--regimes", "bce,bpr", "--protocol", "topk"]
    evaluated = runner.invoke(app, [*evaluate, "--tuned-dir", str(tuned_dir), "--out", str(out)])
    assert evaluated.exit_code == 0, evaluated.output
    text = out.read_text()
    assert "| bpr_mf (bce) |" in text and "| bpr_mf (bpr) |" in text
    assert "bpr_mf (bpr): 3 trials" in text and "bpr_mf (bce):" not in text  # only the bpr regime was tuned
    assert "per-user 8:1:1" in text
    ignored = runner.invoke(app, [*evaluate, "--tuned-dir", str(tuned_dir), "--out", str(out), "--no-tuned"])
    assert ignored.exit_code == 0, ignored.output
    assert "every model's defaults" in out.read_text()


def test_both_regimes_are_separate_rows_and_the_budget_is_reported(tmp_path: Path) -> None:
    small = MODELS["bpr_mf"].Config(dim=8, epochs=1)
    table = evaluate_models(
        ["bpr_mf", "popularity"], [0], synthetic_dataset(), {"bpr_mf": small}, n_users=10, regimes=["bce", "bpr"]
    )
    assert sorted(zip(table["model"], table["regime"], strict=True)) == [
        ("bpr_mf", "bce"),
        ("bpr_mf", "bpr"),
        ("popularity", "none"),
    ]
    text = results_markdown(table, "graphrec evaluate --regimes bce,bpr", 1.0)
    assert "| bpr_mf (bce) |" in text and "| bpr_mf (bpr) |" in text and "| popularity |" in text
    assert "every model's defaults" in text


def _positives_by_user(frame: pd.DataFrame) -> pd.Series:
    return frame[frame["label"] == 1].groupby("user").size()


def test_topk_split_is_8_1_1_per_user_disjoint_with_both_labels() -> None:
    dataset = synthetic_dataset(n_users=30, n_items=80, positives=(1, 20))
    split = holdout_split(dataset.interactions, seed=5)
    parts = (split.train, split.valid, split.test)
    assert sum(map(len, parts)) == len(dataset.interactions) and split.protocol == "topk"
    keys = [set(zip(p["user"], p["item"], strict=True)) for p in parts]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    total = _positives_by_user(dataset.interactions)
    held = {
        name: _positives_by_user(p).reindex(total.index, fill_value=0) for name, p in zip("tvs", parts, strict=True)
    }
    assert (held["t"] >= 1).all(), "every user keeps a training positive"
    for part in ("v", "s"):  # the nearest whole number to a tenth of the user's positives (fewer for tiny users)
        assert (held[part] <= np.floor(total * 0.1 + 0.5)).all()
        many = total >= 5
        assert (held[part][many] == np.floor(total[many] * 0.1 + 0.5)).all()
    assert set(split.valid["label"]) == {0, 1} and set(split.test["label"]) == {0, 1}
    assert not split.test.equals(holdout_split(dataset.interactions, seed=6).test)


class Oracle(Recommender):
    """Scores a fixed (user, item) table: 99 for training positives, 1 for test positives, 0 otherwise."""

    name = "oracle"

    def __init__(self, table: torch.Tensor):
        super().__init__(ModelConfig(), None)  # type: ignore[arg-type]
        self.table = table

    def training_loss(self, batch: Batch) -> torch.Tensor:
        return torch.zeros(())

    def predict_logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.table[users, items]

    def export_serving(self):  # type: ignore[override]
        raise NotImplementedError


def test_topk_protocol_ranks_the_full_catalogue_without_training_positives() -> None:
    dataset = synthetic_dataset(n_users=30, n_items=80, positives=(5, 20))
    data = prepare_data(dataset, seed=1, protocol="topk")
    table = torch.zeros(dataset.n_users, dataset.n_items)
    test_pos = data.split.test[data.split.test["label"] == 1]
    table[test_pos["user"].to_numpy(), test_pos["item"].to_numpy()] = 1.0
    train_pos = data.train_positives
    table[train_pos["user"].to_numpy(), train_pos["item"].to_numpy()] = 99.0
    metrics = topk_metrics(Oracle(table), data, data.split.test, k=20, n_users=None)
    assert metrics["recall@20"] == pytest.approx(1.0) and metrics["ndcg@20"] == pytest.approx(1.0)


def test_a_study_from_a_base_config_keeps_its_fields_outside_the_space(tmp_path: Path, shared_mlflow_uri: str) -> None:
    """``graphrec tune --config FILE``: every trial keeps the file's value of a field the space does not search
    (``item_bias: false`` against the default true), and the study records the file."""
    app, tuned_dir = _app(tmp_path, shared_mlflow_uri), tmp_path / "tuned"
    base = tmp_path / "base.yaml"
    base.write_text("item_bias: false\n")
    args = ["tune", "--model", "bpr_mf", "--trials", "2", "--epochs", "1", "--patience", "1", "--config", str(base)]
    tuned = CliRunner().invoke(app, [*args, "--tuned-dir", str(tuned_dir), "--json"])
    assert tuned.exit_code == 0, tuned.output
    document = yaml.safe_load((tuned_dir / "bpr_mf.bpr.yaml").read_text())
    assert document["config"]["item_bias"] is False and MODELS["bpr_mf"].Config().item_bias is True
    assert document["study"]["base_config"] == str(base)


def test_the_report_names_a_study_s_starting_file_and_first_trial() -> None:
    """A study's starting file and trial 0 are named in the report's budget line only when its record says so."""
    from training.evaluation.report import budget_text
    from training.tuning import StudyRecord

    common = {"regime": "bpr", "protocol": "ctr", "dataset": "d", "n_trials": 12, "seed": 1, "epochs": 50}
    studies = {
        "kcan (bpr)": StudyRecord(
            model="kcan",
            patience=5,
            best_trial=1,
            best_valid_auc=0.9,
            base_config="k.yaml",
            first_trial_is_start=True,
            **common,
        ),  # fmt: skip
        "cke (bpr)": StudyRecord(model="cke", patience=5, best_trial=3, best_valid_auc=0.8, **common),
    }
    text = budget_text(studies)
    kcan = "kcan (bpr): 12 trials (best valid AUC 0.9000, epochs ≤ 50, patience 5, ctr split, seed 1; "
    assert kcan + "fields outside its space from k.yaml; trial 0 its starting config)" in text
    assert "cke (bpr): 12 trials (best valid AUC 0.8000, epochs ≤ 50, patience 5, ctr split, seed 1)" in text
