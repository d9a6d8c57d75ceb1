"""Metrics on hand-made cases; the trainer's early stopping, best-epoch restore and determinism; the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import typer
from sklearn.metrics import ndcg_score
from torch import Tensor, nn
from typer.testing import CliRunner

from cli import train as train_cli
from cli.context import CliError
from graphrec.settings import Settings
from tests.support.datasets import synthetic_dataset
from training.data.dataset import write_dataset
from training.evaluation.harness import evaluate_models
from training.evaluation.metrics import auc_f1, ctr_metrics, mean_by_tercile, recall_ndcg_at_k, topk_metrics
from training.evaluation.report import ablation_rows, results_markdown, wall_text, write_report
from training.evaluation.runs import Reuse
from training.models.base import MODELS, Batch, ModelConfig, Recommender, ServingExport, TrainingData
from training.trainer import fit, predict_rows, rows_as_tensors

pytestmark = pytest.mark.usefixtures("single_thread")


def test_auc_f1_by_hand() -> None:
    labels = np.array([0, 0, 1, 1])
    logits = np.array([-1.0, 0.5, 0.2, 2.0])
    auc, f1 = auc_f1(labels, logits)
    assert auc == pytest.approx(0.75)  # 3 of the 4 (positive, negative) pairs are ordered right
    assert f1 == pytest.approx(0.8)  # predicted [0, 1, 1, 1]: precision 2/3, recall 1


def test_ctr_metrics_per_tercile() -> None:
    labels = np.array([0, 1, 0, 1, 1, 1])
    logits = np.array([-1.0, 1.0, 1.0, -1.0, 2.0, -2.0])
    metrics = ctr_metrics(labels, logits, np.array([0, 0, 1, 1, 2, 2]))
    assert metrics["auc/sparse"] == 1.0 and metrics["auc/medium"] == 0.0
    assert math.isnan(metrics["auc/active"])  # one label only
    assert metrics["f1/active"] == pytest.approx(2 / 3)  # one of two positives found, no false positive


def test_recall_ndcg_by_hand() -> None:
    scores = torch.tensor([[0.9, 0.8, 0.1, -torch.inf, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5]])
    relevant = torch.tensor([[False, True, False, False, True], [True, False, False, False, False]])
    recall, ndcg = recall_ndcg_at_k(scores, relevant, k=2)
    # user 0: top-2 = items 0, 1; one of two relevant found at rank 2
    assert recall[0] == pytest.approx(0.5)
    assert ndcg[0] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert recall[1] == 0.0 and ndcg[1] == 0.0
    finite = scores[1:].numpy()
    assert ndcg[1] == pytest.approx(ndcg_score(relevant[1:].numpy(), finite, k=2))


def test_recall_ndcg_matches_sklearn_on_random_cases() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(20, 50))
    relevant = rng.random((20, 50)) < 0.1
    relevant[:, 0] = True
    _, ndcg = recall_ndcg_at_k(torch.from_numpy(scores), torch.from_numpy(relevant), k=10)
    expected = [ndcg_score(relevant[i : i + 1], scores[i : i + 1], k=10) for i in range(20)]
    np.testing.assert_allclose(ndcg, expected, rtol=1e-9)


def test_mean_by_tercile() -> None:
    metrics = mean_by_tercile("recall@20", np.array([1.0, 0.0, 0.5, np.nan]), np.array([0, 0, 2, 2]))
    assert metrics == {
        "recall@20": 0.5,
        "recall@20/sparse": 0.5,
        "recall@20/medium": pytest.approx(math.nan, nan_ok=True),
        "recall@20/active": 0.5,
    }


class TableModel(Recommender):
    """A test double: logit = theta · table[u, i], table = ±1 (validation labels) + noise; theta is pulled to +1
    for the first ``flip_after`` epochs and to -1 afterwards, so validation AUC is best early and then collapses."""

    name = "table_double"

    def __init__(self, config: ModelConfig, data: TrainingData, flip_after: int = 2):
        super().__init__(config, data)
        generator = torch.Generator().manual_seed(0)
        table = torch.randn(data.dataset.n_users, data.dataset.n_items, generator=generator)
        users, items, labels = rows_as_tensors(data.split.valid)
        table[users, items] += 2.0 * labels.float() - 1.0
        self.register_buffer("table", table)
        self.theta = nn.Parameter(torch.tensor(0.1))
        self.flip_after, self.target = flip_after, 1.0

    def on_epoch_start(self, epoch: int) -> None:
        self.target = 1.0 if epoch <= self.flip_after else -1.0

    def training_loss(self, batch: Batch) -> Tensor:
        return (self.theta - self.target) ** 2 + 0.0 * batch.labels.float().sum()

    def predict_logits(self, users: Tensor, items: Tensor) -> Tensor:
        return self.theta * self.table[users, items]

    def export_serving(self) -> ServingExport:
        raise NotImplementedError


@pytest.fixture
def table_model(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(MODELS, TableModel.name, TableModel)
    return TableModel.name


def test_early_stopping_restores_best_validation_epoch(table_model: str, training_data: TrainingData) -> None:
    config = ModelConfig(lr=0.5, epochs=30, patience=3, batch_size=16)
    result = fit(table_model, training_data, config, seed=0)
    aucs = [r.valid_auc for r in result.history]
    assert len(result.history) < config.epochs  # stopped early
    assert result.best_epoch == int(np.argmax(aucs)) + 1
    assert len(result.history) == result.best_epoch + config.patience
    assert aucs[-1] < result.best_valid_auc
    users, items, labels = rows_as_tensors(training_data.split.valid)
    restored_auc, _ = auc_f1(labels.numpy(), predict_rows(result.model, users, items))
    assert restored_auc == pytest.approx(result.best_valid_auc)
    assert float(result.model.theta.detach()) > 0  # the last epochs pushed theta negative; the best state came back


def test_checkpoint_written(table_model: str, training_data: TrainingData, tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    result = fit(table_model, training_data, ModelConfig(lr=0.5, epochs=6, patience=2), seed=0, checkpoint_path=path)
    assert torch.load(path)["theta"] == result.model.theta.detach()


def test_fit_is_deterministic(training_data: TrainingData) -> None:
    config = MODELS["bpr_mf"].Config(dim=8, epochs=3, batch_size=32, patience=5)
    first, second = (fit("bpr_mf", training_data, config, seed=7) for _ in range(2))
    assert [r.train_loss for r in first.history] == [r.train_loss for r in second.history]
    assert [r.valid_auc for r in first.history] == [r.valid_auc for r in second.history]
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key])
    other = fit("bpr_mf", training_data, config, seed=8)
    assert [r.train_loss for r in other.history] != [r.train_loss for r in first.history]


def test_topk_excludes_training_positives(table_model: str, training_data: TrainingData) -> None:
    model = TableModel(ModelConfig(), training_data)
    rows = training_data.split.valid
    valid_users, valid_items, _ = rows_as_tensors(rows[rows["label"] == 1])
    train_positives = training_data.train_positives
    train_users, train_items = (torch.from_numpy(train_positives[c].to_numpy()) for c in ("user", "item"))
    with torch.no_grad():  # training positives score highest: if they were candidates they would fill the top
        model.table.zero_()
        model.table[valid_users, valid_items] = 1.0
        model.table[train_users, train_items] = 99.0
        model.theta.fill_(1.0)
    metrics = topk_metrics(model, training_data, rows, k=10, n_users=None)
    assert metrics["recall@10"] == pytest.approx(1.0) and metrics["ndcg@10"] == pytest.approx(1.0)
    assert set(metrics) == {f"{m}@10{t}" for m in ("recall", "ndcg") for t in ("", "/sparse", "/medium", "/active")}
    sampled = topk_metrics(model, training_data, rows, k=10, n_users=3)
    assert sampled["recall@10"] == pytest.approx(1.0)


def test_harness_and_report(tmp_path: Path) -> None:
    config = MODELS["bpr_mf"].Config(dim=8, epochs=2, batch_size=64)
    table = evaluate_models(["bpr_mf"], [0, 1], synthetic_dataset(), {"bpr_mf": config}, n_users=10)
    assert len(table) == 2 and set(table["seed"]) == {0, 1}
    assert {"auc", "f1", "recall@20", "ndcg@20", "auc/sparse", "valid_auc", "seconds_per_epoch"} <= set(table.columns)
    assert (table["run_seconds"] > 0).all()  # each run's own wall time, recorded in its row
    assert table["diag_personal/top20_jaccard"].between(0, 1).all()
    report, plots = write_report(table, "graphrec evaluate --models bpr_mf --seeds 2", 1.0, tmp_path / "RESULTS.md")
    text = report.read_text()
    assert "graphrec evaluate --models bpr_mf --seeds 2" in text and "±" in text and "sparse" in text
    personal = text.split("## How personal the rankings are", 1)[1]
    assert "| model | item-effect share | top-20 Jaccard | top-20 coverage |" in personal
    assert plots == [tmp_path / "RESULTS.by_tercile.png"] and plots[0].stat().st_size > 0
    assert "![metrics by tercile](RESULTS.by_tercile.png)" in text


def test_two_reports_in_one_folder_keep_their_own_plots(tmp_path: Path) -> None:
    table = evaluate_models(["popularity"], [0, 1], synthetic_dataset(), n_users=10)
    reports = [write_report(table, "graphrec evaluate", 1.0, tmp_path / name)[0] for name in ("a.md", "b.md")]
    for report, plot in zip(reports, ("a.by_tercile.png", "b.by_tercile.png"), strict=True):
        assert f"![metrics by tercile]({plot})" in report.read_text()
        assert (tmp_path / plot).stat().st_size > 0
    assert not (tmp_path / "results_by_tercile.png").exists()


def test_wall_time_says_what_this_invocation_ran_and_what_it_reused() -> None:
    assert wall_text(12.4, 5, Reuse()) == "Wall time: 12 s"
    text = wall_text(0.2, 4, Reuse(runs=4, timed=4, seconds=310.6))
    assert text.startswith("Wall time: 0 s for the 0 run(s) this invocation made; 4 of the 4 runs were made by")
    assert "their recorded run times summing to 311 s" in text and "before runs were timed" not in text
    partly = wall_text(30.0, 6, Reuse(runs=4, timed=1, seconds=50.0))
    assert "for the 2 run(s) this invocation made" in partly and "summing to 50 s" in partly
    assert "3 of them made before runs were timed" in partly
    assert "run time not recorded" in wall_text(1.0, 2, Reuse(runs=2))


def test_ablations_run_beside_the_full_model_under_its_config() -> None:
    config = MODELS["kcan"].Config(dim=8, epochs=1, batch_size=64, top_k=3)
    table = evaluate_models(["kcan"], [0], synthetic_dataset(), {"kcan": config}, n_users=10, ablations=True)
    assert list(table["model"]) == [
        "kcan",
        "kcan w/o knowledge attention",
        "kcan w/o distillation",
        "kcan w/o conditional attention",
    ]
    assert set(table["family"]) == {"kcan"}
    assert list(table["ablation"]) == ["", *MODELS["kcan"].ablations]
    assert table["auc"].nunique() > 1  # each ablation really changed the model
    stages = results_markdown(table, "graphrec evaluate --ablations", 1.0).split("## Do the knowledge stages", 1)[1]
    assert "| kcan w/o knowledge attention (bce) | 1.000 ± 0.000 | 1.000 ± 0.000 | 1.000 ± 0.000 |" in stages
    assert "| kcan w/o distillation (bce) | " in stages and "| 0.000 ± 0.000 | 1.000 ± 0.000 |" in stages  # no cut
    assert "| kcan (bce) | no conditional attention |" in stages  # the ablation table, one row per ablation


def test_parallel_jobs_give_the_same_numbers_as_one_process() -> None:
    config = MODELS["bpr_mf"].Config(dim=8, epochs=2, batch_size=64)
    args = (["bpr_mf", "popularity"], [0, 1], synthetic_dataset(), {"bpr_mf": config})
    serial = evaluate_models(*args, n_users=10)
    parallel = evaluate_models(*args, n_users=10, jobs=2)
    assert list(parallel["model"]) == list(serial["model"]) and list(parallel["seed"]) == list(serial["seed"])
    for column in ("auc", "f1", "recall@20", "valid_auc", "best_epoch"):
        assert parallel[column].tolist() == pytest.approx(serial[column].tolist(), abs=1e-6), column


def test_report_has_a_section_and_a_plot_per_dataset(tmp_path: Path) -> None:
    one = evaluate_models(["popularity"], [0, 1], synthetic_dataset(seed=0), n_users=10)
    two = evaluate_models(["popularity"], [0, 1], synthetic_dataset(seed=1), n_users=10)
    table = pd.concat([one.assign(dataset="lastfm"), two.assign(dataset="synthetic-alipay-kg0.7")])
    report, plots = write_report(table, "graphrec evaluate --datasets a,b", 2.0, tmp_path / "RESULTS.md")
    text = report.read_text()
    assert text.count("## Dataset: ") == 2 and text.index("lastfm") < text.index("synthetic-alipay-kg0.7")
    assert text.count("### Test metrics, overall") == 2
    assert [p.name for p in plots] == [
        "RESULTS.by_tercile.lastfm.png",
        "RESULTS.by_tercile.synthetic-alipay-kg0-7.png",
    ]
    assert all(f"![metrics by tercile]({p.name})" in text for p in plots)
    assert all(p.stat().st_size > 0 for p in plots)


def test_ablation_table_pairs_runs_by_seed() -> None:
    table = pd.DataFrame(
        {
            "family": ["kcan"] * 6,
            "ablation": ["", "", "", "no distillation", "no distillation", "no distillation"],
            "regime": ["bpr"] * 6,
            "seed": [0, 1, 2, 0, 1, 2],
            "auc": [0.80, 0.82, 0.84, 0.70, 0.72, 0.74],  # 0.10 below in every seed; the full model's std 0.0163
            "recall@20": [0.3, 0.3, 0.3, 0.31, 0.29, 0.3],
        }
    )
    [row] = ablation_rows(table)  # no tercile columns: the "all" group only
    assert row[:3] == ["kcan (bpr)", "no distillation", "all"]
    assert row[3] == "-0.1000 ± 0.0000" and row[4] == "+0.0000 ± 0.0082"
    assert row[5] == f"{np.std([0.80, 0.82, 0.84]):.4f}" and row[6] == "yes"
    table["auc/sparse"], table["recall@20/sparse"] = table["auc"], table["recall@20"]
    table.loc[3:, "auc"] = [0.79, 0.83, 0.83]  # on average 0.0033 below: inside the 0.0163 spread
    every, sparse = ablation_rows(table)
    assert every[2:] == ["all", "-0.0033 ± 0.0094", "+0.0000 ± 0.0082", f"{np.std([0.80, 0.82, 0.84]):.4f}", "no"]
    assert sparse[2] == "sparse" and sparse[3] == "-0.1000 ± 0.0000" and sparse[6] == "yes"  # the sparse users lose


def train_app(tmp_path: Path) -> tuple[typer.Typer, Path]:
    """`train` and `evaluate` over a small synthetic dataset in ``tmp_path``, and a config folder with a tiny BPR-MF."""
    write_dataset(synthetic_dataset(), tmp_path / "synthetic")
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = Settings(dataset=str(tmp_path / "synthetic"), work_dir=tmp_path / "work")

    app.command("train")(train_cli.train)
    app.command("evaluate")(train_cli.evaluate)
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "bpr_mf.yaml").write_text("dim: 8\nepochs: 2\nbatch_size: 64\n")
    return app, configs


def test_cli_train_and_evaluate(tmp_path: Path) -> None:
    app, configs = train_app(tmp_path)
    runner = CliRunner()
    trained = runner.invoke(
        app, ["train", "--model", "bpr_mf", "--config", str(configs / "bpr_mf.yaml"), "--seed", "1"]
    )
    assert trained.exit_code == 0, trained.output
    assert "validation" in trained.output and "auc/sparse" in trained.output
    out = tmp_path / "report" / "RESULTS.md"
    evaluated = runner.invoke(
        app,
        [
            "evaluate",
            "--models",
            "bpr_mf",
            "--seeds",
            "1",
            "--out",
            str(out),
            "--config-dir",
            str(configs),
            "--threads",
            "1",
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert out.exists() and (out.parent / "RESULTS.by_tercile.png").exists()
    budget = next(line for line in out.read_text().splitlines() if line.startswith("Hyper-parameters:"))
    assert f"bpr_mf: {configs / 'bpr_mf.yaml'}" in budget and "every model's defaults" not in budget
    twice = runner.invoke(app, ["evaluate", "--datasets", f"{tmp_path / 'synthetic'},{tmp_path / 'synthetic'}"])
    assert isinstance(twice.exception, CliError) and "two datasets share a name" in str(twice.exception)
    elsewhere = runner.invoke(app, ["evaluate", "--ablations", "lastfm"])  # the configured dataset is not Last.FM
    assert isinstance(elsewhere.exception, CliError) and "lastfm not evaluated here" in str(elsewhere.exception)
    missing = runner.invoke(app, ["evaluate", "--datasets", f"lastfm,{tmp_path / 'nowhere'}"])
    assert missing.exit_code != 0 and str(tmp_path / "nowhere") in str(missing.exception)


def test_evaluate_records_every_run_and_resumes_without_repeating_them(tmp_path: Path) -> None:
    app, configs = train_app(tmp_path)
    out = tmp_path / "RESULTS.md"
    args = ["evaluate", "--models", "bpr_mf,popularity", "--seeds", "1", "--out", str(out)]
    args += ["--config-dir", str(configs)]
    runner = CliRunner()
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    runs = tmp_path / "RESULTS.runs.jsonl"
    recorded = [json.loads(line) for line in runs.read_text().splitlines()]
    assert [(r["dataset"], r["model"]) for r in recorded] == [("synthetic", "bpr_mf"), ("synthetic", "popularity")]
    report = out.read_text()

    again = runner.invoke(app, [*args, "--resume"])
    assert again.exit_code == 0, again.output
    assert "2 recorded run(s) in" in again.output and "test AUC" not in again.output  # nothing trained
    assert len(runs.read_text().splitlines()) == 2
    assert overall_table(out.read_text()) == overall_table(report)
    header = out.read_text().split("## Test metrics", 1)[0]
    assert "for the 0 run(s) this invocation made; 2 of the 2 runs were made by an earlier invocation" in header
    recorded_seconds = sum(r["run_seconds"] for r in recorded)
    assert recorded_seconds > 0 and f"their recorded run times summing to {recorded_seconds:.0f} s" in header

    untimed = [{k: v for k, v in r.items() if k != "run_seconds"} for r in recorded]  # rows from before run timing
    runs.write_text("".join(json.dumps(r) + "\n" for r in untimed))
    old = runner.invoke(app, [*args, "--resume"])
    assert old.exit_code == 0, old.output
    assert "their run time not recorded (made before runs were timed)" in out.read_text()

    (configs / "bpr_mf.yaml").write_text("dim: 4\nepochs: 2\nbatch_size: 64\n")  # another config: run again
    changed = runner.invoke(app, [*args, "--resume"])
    assert changed.exit_code == 0, changed.output
    assert "bpr_mf (bpr) seed" in changed.output and "popularity (none) seed" not in changed.output
    assert len(runs.read_text().splitlines()) == 3

    runs.write_text(runs.read_text() + "{not json\n")
    broken = runner.invoke(app, [*args, "--resume"])
    assert isinstance(broken.exception, CliError) and f"{runs}:4: not a recorded run" in str(broken.exception)
    assert len(runs.read_text().splitlines()) == 4  # a failed resume leaves the file as it was

    fresh = runner.invoke(app, args)  # without --resume a new evaluation starts over
    assert fresh.exit_code == 0, fresh.output
    assert len(runs.read_text().splitlines()) == 2


def overall_table(report: str) -> str:
    """A report from its tables on (the header with the command and wall time differs between runs)."""
    return report.split("## Test metrics, overall", 1)[1]
