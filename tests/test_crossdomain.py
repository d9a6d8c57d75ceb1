"""Cross-domain (issue 13): the Amazon Clothing + Sports loader and its validation, the synthetic two-domain split and
its sparsity knob, leakage, the alignment losses' closed forms, model determinism and a tiny two-domain fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from graphrec.settings import Settings
from training.data.amazon import COMMON_FILE, DOMAIN_FOLDERS, load_amazon
from training.data.errors import DataNotFoundError, DatasetError
from training.synth.crossdomain import cross_domain_config, cross_domain_split, target_counts
from training.synth.generator import generate_dataset

# A two-domain toy in the release's layout. Overlapping users 0..3 (C = 4); Clothing cold users: 3; Sports cold: 2.
# Private users (ids >= 4) differ per domain: Clothing's 4 and Sports' 4 are two people.
_TOY = {
    "cloth_sport": {
        "train.txt": ["0\t0", "0\t1", "1\t1", "2\t2", "4\t0", "4\t2"],
        "valid.txt": ["3\t0"],
        "test.txt": ["3\t2"],
        COMMON_FILE: ["0\t0\t1", "0\t1\t1", "1\t1\t1", "2\t2\t1", "3\t0\t1", "3\t2\t1"],
    },
    "sport_cloth": {
        "train.txt": ["0\t0", "1\t1", "3\t0", "3\t1", "4\t1", "5\t0"],
        "valid.txt": ["2\t1"],
        "test.txt": ["2\t0"],
        COMMON_FILE: ["0\t0\t1", "1\t1\t1", "3\t0\t1", "3\t1\t1", "2\t1\t1", "2\t0\t1"],
    },
}


def _write_toy(root: Path, changes: dict[tuple[str, str], list[str]] | None = None) -> Path:
    folder = root / "amazon-cloth-sport"
    for sub, files in _TOY.items():
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for name, lines in files.items():
            lines = (changes or {}).get((sub, name), lines)
            (folder / sub / name).write_text("".join(line + "\n" for line in lines))
    return folder


def _problems(root: Path, changes: dict[tuple[str, str], list[str]]) -> list[str]:
    with pytest.raises(DatasetError) as caught:
        load_amazon(_write_toy(root, changes))
    return [str(p) for p in caught.value.problems]


def test_amazon_toy_loads_with_private_users_kept_apart(tmp_path: Path) -> None:
    dataset, split = load_amazon(_write_toy(tmp_path))
    assert dataset.domains == ["clothing", "sports"]
    # 4 overlapping + Clothing's private user 4 + Sports' private users 4 and 5 (renumbered 5 and 6)
    assert dataset.n_users == 7
    assert dataset.n_items == 3 + 2
    sports_train = split.train[split.train["domain"] == 1]
    assert set(sports_train["user"]) == {0, 1, 3, 5, 6}
    assert set(sports_train["item"]) == {3, 4}  # Sports items follow Clothing's 3
    assert split.valid[["user", "item", "domain"]].to_numpy().tolist() == [[3, 0, 0], [2, 4, 1]]
    assert (dataset.interactions["label"] == 1).all()
    assert len(dataset.interactions) == len(split.train) + len(split.valid) + len(split.test)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({("cloth_sport", "valid.txt"): ["3\t0", "0\t1"]}, "cloth_sport/valid.txt:2: user 0 item 1 is also in train"),
        (
            {("cloth_sport", "test.txt"): ["3\t2", "1\t0"]},
            "cloth_sport/test.txt:2: held-out user 1 has training rows in this domain (target-domain leakage)",
        ),
        ({("sport_cloth", "train.txt"): ["0\t0", "1\tx"]}, "sport_cloth/train.txt:2 column 'item'"),
        ({("sport_cloth", "test.txt"): ["2\t0", "2\t1"]}, "sport_cloth/test.txt:2: user 2 item 1 is also in valid.txt"),
        ({("cloth_sport", "valid.txt"): ["3\t0", "4\t1"]}, "cloth_sport/valid.txt:2: user 4 is not an overlapping"),
        ({("cloth_sport", COMMON_FILE): ["0\t0\t1"]}, "sport_cloth/common_new_reindex.txt: 4 overlapping users"),
    ],
)
def test_amazon_validation_names_file_and_line(tmp_path: Path, changes: dict, expected: str) -> None:
    assert any(expected in problem for problem in _problems(tmp_path, changes)), _problems(tmp_path, changes)


def test_amazon_cold_user_without_source_history_is_refused(tmp_path: Path) -> None:
    cloth_train = [line for line in _TOY["cloth_sport"]["train.txt"] if not line.startswith("2\t")]
    problems = _problems(tmp_path, {("cloth_sport", "train.txt"): cloth_train})
    expected = "sport_cloth/valid.txt:1: held-out user 2 has no training row in the other domain"
    assert any(expected in problem for problem in problems)


def test_amazon_missing_folder_names_the_files(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="cloth_sport/train.txt"):
        load_amazon(tmp_path)


def test_amazon_real_release_counts() -> None:
    root = Settings().data_dir
    if not (root / "amazon-cloth-sport" / DOMAIN_FOLDERS[0] / "train.txt").exists():
        pytest.skip("the Amazon Clothing + Sports release is not here")
    dataset, split = load_amazon(root)
    assert dataset.n_users == 59_329  # SOURCE.md: users in the union of both domains
    trains = [split.train[split.train["domain"] == d] for d in (0, 1)]
    assert [len(t) for t in trains] == [187_880, 163_291]
    assert len(set(trains[0]["user"]) & set(trains[1]["user"])) == 7_856  # 9,828 overlap less both cold blocks
    assert [split.test[split.test["domain"] == d]["user"].nunique() for d in (0, 1)] == [907, 897]


@pytest.fixture(scope="module")
def synth_two_domains(tmp_path_factory: pytest.TempPathFactory):
    from training.data.dataset import load_dataset_dir

    folder = tmp_path_factory.mktemp("cd") / "synth"
    generate_dataset(cross_domain_config(600, seed=3, n_items=400), folder)
    return load_dataset_dir(folder)


def test_synthetic_split_is_seeded_nested_and_leak_free(synth_two_domains) -> None:
    dataset = synth_two_domains
    sparse, full = cross_domain_split(dataset, 1, 0.3, seed=5), cross_domain_split(dataset, 1, 1.0, seed=5)
    again = cross_domain_split(dataset, 1, 0.3, seed=5)
    assert sparse.train.equals(again.train) and sparse.test.equals(again.test)
    key = lambda frame: set(zip(frame["user"], frame["item"], strict=True))  # noqa: E731
    assert key(sparse.train) < key(full.train)  # the rows kept at 0.3 are among those kept at 1.0
    assert sparse.test.equals(full.test) and sparse.valid.equals(full.valid)  # the knob never moves held-out rows
    held = key(full.valid) | key(full.test)
    assert not held & key(full.train)
    assert (full.test["domain"] == 1).all() and (full.valid["domain"] == 1).all()
    source = dataset.positives[dataset.positives["domain"] == 0]
    assert key(source) <= key(sparse.train)  # the source domain is all training
    counts = target_counts(full, 1, dataset.n_users)
    assert (counts[full.test["user"].to_numpy()] == 0).any()  # cold users exist even with every row kept
    target_share = (sparse.train["domain"] == 1).sum() / (full.train["domain"] == 1).sum()
    assert 0.2 < target_share < 0.4


def test_synthetic_split_refuses_bad_share(synth_two_domains) -> None:
    with pytest.raises(ValueError, match="keep must lie in"):
        cross_domain_split(synth_two_domains, 1, 1.5)


def test_synthetic_generator_has_overlapping_users(synth_two_domains) -> None:
    positives = synth_two_domains.positives
    users = [set(positives.loc[positives["domain"] == d, "user"]) for d in (0, 1)]
    assert len(users[0] & users[1]) > 0.3 * synth_two_domains.n_users
    assert np.array_equal(np.unique(positives["domain"]), [0, 1])


# --- the cross-domain package: task views, alignment, models, evaluation -------------------------------------------


@pytest.fixture(scope="module")
def coupon_task(synth_two_domains):
    from training.crossdomain.task import build_task

    return build_task(synth_two_domains, cross_domain_split(synth_two_domains, 1, 0.3, seed=5), (1,))


def _pairs(rows: np.ndarray) -> set[tuple[int, int]]:
    return {(int(u), int(i)) for u, i in rows}


def test_no_held_out_row_is_an_edge_of_any_training_graph(tmp_path: Path, coupon_task) -> None:
    from training.crossdomain.graph import domain_graph, merged_graph
    from training.crossdomain.task import build_task

    dataset, split = load_amazon(_write_toy(tmp_path))
    for task in (build_task(dataset, split, (0, 1)), coupon_task):
        for domain in (0, 1):
            source, target = domain_graph(task, domain).edges()
            edges = _pairs(np.stack([source.numpy(), target.numpy() - task.n_users], axis=1))
            held = _pairs(task.valid[domain]) | _pairs(task.test[domain])
            assert not held & edges
            assert _pairs(task.train[domain]) <= edges
        source, target = merged_graph(task).edges()
        merged = _pairs(np.stack([source.numpy(), target.numpy() - task.n_users], axis=1))
        shifted = [
            rows + np.array([0, task.n_items[0] if d else 0]) for d in (0, 1) for rows in (task.valid[d], task.test[d])
        ]
        assert not _pairs(np.concatenate(shifted)) & merged
        # a user cold in a domain is an isolated node of that domain's graph, whatever the source side holds
        for domain in task.targets:
            cold = np.setdiff1d(task.test[domain][:, 0], task.train[domain][:, 0])
            assert len(cold) and (domain_graph(task, domain).in_degrees(cold) == 0).all()
            assert task.has_train[1 - domain, cold].all()


def test_mmd_and_coral_match_their_closed_forms() -> None:
    import torch

    from training.crossdomain.align import coral, mmd2

    x, y = torch.tensor([[0.0]]), torch.tensor([[1.0]])
    # k(0,0) + k(1,1) - 2 k(0,1) with k(a,b) = exp(-(a-b)^2 / (2 sigma^2)), sigma = 1 and 2
    expected = (2 - 2 * np.exp(-1 / 2)) + (2 - 2 * np.exp(-1 / 8))
    assert float(mmd2(x, y, [1.0, 2.0])) == pytest.approx(expected, rel=1e-6)
    assert float(mmd2(torch.randn(8, 3), torch.randn(8, 3).clone())) >= 0
    same = torch.randn(16, 4)
    assert float(mmd2(same, same.clone())) == pytest.approx(0.0, abs=1e-6)
    a = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # covariance diag(2, 0)
    b = torch.tensor([[0.0, 1.0], [0.0, -1.0]])  # covariance diag(0, 2)
    assert float(coral(a, b)) == pytest.approx((4 + 4) / (4 * 2 * 2))


def test_candidates_exclude_the_users_items_and_ties_are_not_rewarded(coupon_task) -> None:
    import torch

    from training.crossdomain.evaluate import rank_rows, sample_candidates

    task = coupon_task
    candidates = sample_candidates(task, 1, task.test[1], 20, seed=0)
    assert (candidates.items[:, 0] == task.test[1][:, 1]).all()
    pool = set(task.train[1][:, 1])
    every = np.concatenate([task.train[1], task.valid[1], task.test[1]])
    for user, row in zip(candidates.users, candidates.items, strict=True):
        negatives = row[1:]
        assert len(set(negatives)) == 20 and set(negatives) <= pool
        assert not set(negatives) & set(every[every[:, 0] == user, 1])
    rank, auc = rank_rows(torch.ones(task.n_users, 1), torch.ones(task.n_items[1], 1), candidates, seed=0)
    assert np.allclose(auc, 0.5)
    assert 7 < rank.mean() < 13  # a constant scorer ranks the positive at random among 21, not first
    with pytest.raises(ValueError, match="fewer than the"):
        sample_candidates(task, 1, task.test[1], task.n_items[1], seed=0)


def test_model_is_deterministic_with_a_seed(coupon_task, single_thread) -> None:
    import torch

    from training.crossdomain.model import CrossDomainModel, variant_config

    config = variant_config("cdgnn", seed=4, batch_size=512)
    fits = [CrossDomainModel(coupon_task, config) for _ in range(2)]
    losses = [fit.train_epoch(fit.optimizer()) for fit in fits]
    assert losses[0] == losses[1]
    first, second = (fit.user_item_matrices(1) for fit in fits)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    other = CrossDomainModel(coupon_task, variant_config("cdgnn", seed=5, batch_size=512))
    assert not torch.equal(other.user_item_matrices(1)[1], first[1])


def test_cold_users_are_represented_from_the_source_view(coupon_task, single_thread) -> None:
    import torch

    from training.crossdomain.model import CrossDomainModel, variant_config

    model = CrossDomainModel(coupon_task, variant_config("cdgnn", batch_size=512))
    cold = np.flatnonzero(~coupon_task.has_train[1] & coupon_task.has_train[0])
    users, _ = model.user_item_matrices(1)
    with torch.no_grad():
        source = model.encoders[0]()[: coupon_task.n_users]
        expected = model.heads[1](source[torch.as_tensor(cold)])
    assert torch.allclose(users[torch.as_tensor(cold)], expected, atol=1e-6)
    target_only = CrossDomainModel(coupon_task, variant_config("lightgcn-target", batch_size=512))
    with torch.no_grad():
        own = target_only.encoders[1]()[: coupon_task.n_users]
    assert torch.allclose(target_only.user_item_matrices(1)[0], own)


def test_tiny_two_domain_fit_learns_and_reports_at_best_validation(coupon_task, single_thread) -> None:
    from training.crossdomain.experiment import eval_sets, run_model
    from training.crossdomain.model import CrossDomainModel, variant_config

    model = CrossDomainModel(coupon_task, variant_config("cdgnn", batch_size=256))
    optimizer = model.optimizer()
    losses = [model.train_epoch(optimizer) for _ in range(4)]
    assert losses[-1] < losses[0]
    sets = eval_sets(coupon_task, 20, seed=0)
    for name in ("popularity", "emcdr", "gcn-merged", "cdgnn"):
        result = run_model(coupon_task, sets, name, seed=0, epochs=2, batch_size=256).domains["coupon"]
        assert result.best_epoch in ((0,) if name == "popularity" else (1, 2))
        assert 0 < result.test["MRR"] <= 1 and 0 <= result.test["AUC"] <= 1
        assert sum(result.group_rows.values()) == len(coupon_task.test[1])
        assert set(result.full) == {"Recall@20", "NDCG@20"}


def test_unknown_variant_is_refused() -> None:
    from training.crossdomain.model import variant_config

    with pytest.raises(ValueError, match="unknown cross-domain model 'gnn'"):
        variant_config("gnn")


# --- graphrec crossdomain ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--keep", "0.5"], "published split only: use --keep 1.0"),
        (["--models", "popularity,gnn"], "unknown model(s) gnn"),
        (["--keep", "0,1"], "--keep takes shares in (0, 1]"),
        (["--direction", "north"], "--direction for amazon is one of both, cloth-sport, sport-cloth"),
    ],
)
def test_cli_refuses_bad_options_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    _write_toy(tmp_path)
    result = CliRunner().invoke(
        app, ["--data-dir", str(tmp_path), "--work-dir", str(tmp_path), "crossdomain", "evaluate", *args]
    )
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())


def test_cli_evaluates_a_synthetic_folder_and_writes_report_and_figure(tmp_path: Path, single_thread) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    runner = CliRunner()
    folder = tmp_path / "two"
    assert (
        runner.invoke(app, ["crossdomain", "synth", "--out", str(folder), "--users", "400", "--items", "300"]).exit_code
        == 0
    )
    out = tmp_path / "report.md"
    common = ["crossdomain", "evaluate", "--data", str(folder), "--epochs", "1", "--negatives", "10"]
    bad = runner.invoke(app, [*common, "--direction", "coupon-coupon"])
    assert bad.exit_code == 1 and "fund-coupon, coupon-fund" in bad.output
    args = [*common, "--direction", "fund-coupon", "--keep", "0.5,1", "--models", "popularity,cdgnn", "--out", str(out)]
    result = runner.invoke(app, ["--work-dir", str(tmp_path / "work"), *args, "--batch-size", "256", "--json"])
    assert result.exit_code == 0, result.output
    report = out.read_text()
    assert "## Target coupon, 50% of target training rows kept" in report and "| cdgnn | cold |" in report
    assert "Command: `graphrec" in report and "Wall time:" in report and '"n_users": 400' in report
    assert out.with_suffix(".png").stat().st_size > 0
    _assert_sweep_logged(tmp_path / "work", json.loads(result.stdout))


def _assert_sweep_logged(work: Path, printed: dict) -> None:
    """The sweep's MLflow run holds the report, the AUC-vs-kept-share figure and each share's mean test AUC."""
    from mlflow import MlflowClient

    from registry.tracking import configure_mlflow

    configure_mlflow(Settings(work_dir=work))
    client = MlflowClient()
    run = client.get_run(printed["mlflow_run"])
    artifacts = {a.path for folder in ("report", "plots") for a in client.list_artifacts(run.info.run_id, folder)}
    assert artifacts == {"report/report.md", "plots/report.png"}
    for share, key in (("0.5", "0.5"), ("1.0", "1")):
        auc = [r["domains"]["coupon"]["test"]["AUC"] for r in printed["runs"][share] if r["model"] == "cdgnn"]
        assert run.data.metrics[f"coupon/keep_{key}/cdgnn/auc"] == pytest.approx(float(np.mean(auc)))
    assert run.data.params["keeps"] == "0.5,1"


def test_cli_builds_the_synthetic_set_named_by_data(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    runner = CliRunner()
    common = ["--work-dir", str(tmp_path), "crossdomain", "evaluate", "--no-mlflow", "--out", str(tmp_path / "r.md")]
    bad = runner.invoke(app, [*common, "--data", "synth:many"])
    assert bad.exit_code == 1 and "write synth:USERS, synth:USERS:ITEMS or synth:USERS:ITEMS:SEED" in bad.output
    args = ["--data", "synth:120:80:4", "--direction", "fund-coupon", "--models", "popularity", "--negatives", "5"]
    result = runner.invoke(app, [*common, *args])
    assert result.exit_code == 0, result.output
    generated = json.loads((tmp_path / "crossdomain" / "synth-u120-i80-s4" / "dataset.json").read_text())
    assert generated["generator"]["n_users"] == 120 and generated["generator"]["seed"] == 4
    assert '"n_items": 80' in (tmp_path / "r.md").read_text()


def test_serving_form_scores_equal_the_model(coupon_task, single_thread) -> None:
    import torch

    from serving.scoring import build_scorer
    from training.crossdomain.export import export_serving
    from training.crossdomain.model import CrossDomainModel, variant_config

    model = CrossDomainModel(coupon_task, variant_config("cdgnn", batch_size=512))
    model.train_epoch(model.optimizer())
    exported = export_serving(model, 1)
    scorer = build_scorer(exported.scorer_kind, exported.scorer_state)
    rng = np.random.default_rng(0)
    users = np.concatenate([rng.integers(0, coupon_task.n_users, 50), coupon_task.test[1][:50, 0]])  # cold ones too
    local = rng.integers(0, coupon_task.n_items[1], len(users))
    user_table = exported.user_features.set_index("user_id")
    item_table = exported.item_features.set_index("item_id")
    user_rows = {"embedding": np.stack(user_table.loc[users, "embedding"].to_numpy())}
    item_rows = {"embedding": np.stack(item_table.loc[coupon_task.items[1][local], "embedding"].to_numpy())}
    served = scorer.score(user_rows, item_rows)
    with torch.no_grad():  # the training path: views of this batch's users only, combined, through the head
        own, source, items = model._views(model._outputs(), 1)
        batch = torch.as_tensor(users)
        vectors = model._head(1, model._combine(1, batch, own[batch], source[batch]))
        expected = (vectors * items[torch.as_tensor(local)]).sum(1).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)
    assert set(item_table.index) == set(coupon_task.items[1])  # only the target domain's items are served


def test_pretraining_epochs_reconstruct_own_edges_only(coupon_task, single_thread) -> None:
    import torch

    from training.crossdomain.experiment import eval_sets, run_model
    from training.crossdomain.model import CrossDomainModel, variant_config

    model = CrossDomainModel(coupon_task, variant_config("cdgnn-pretrain", batch_size=512))
    optimizer = model.optimizer()
    losses = [model.train_epoch(optimizer, pretraining=True) for _ in range(2)]
    assert losses[1] < losses[0]
    for head in model.heads:  # the head gets no gradient while pre-training, so Adam leaves it at the identity
        assert torch.equal(head.weight, torch.eye(head.weight.shape[0]))
    before = [p.detach().clone() for p in model.encoders[0].parameters()]
    model.train_epoch(optimizer)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.encoders[0].parameters(), strict=True))
    assert not torch.equal(model.heads[1].weight, torch.eye(model.heads[1].weight.shape[0]))
    result = run_model(coupon_task, eval_sets(coupon_task, 20, 0), "cdgnn-pretrain", 0, 3, batch_size=512)
    assert result.domains["coupon"].best_epoch in (1, 2, 3)
