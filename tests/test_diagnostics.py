"""Diagnostics on toy inputs whose answer is known: attention entropy, distillation, conditioning, personalisation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from cli import train as train_cli
from graphrec.settings import Settings
from tests.support.datasets import synthetic_dataset
from training.data.dataset import write_dataset
from training.evaluation.diagnostics import (
    attention_entropy,
    attention_summary,
    catalogue_coverage,
    conditioning_sensitivity,
    distillation_summary,
    item_main_effect_share,
    logit_shares,
    max_over_uniform,
    mean_pairwise_jaccard,
    personalisation,
    top_k_edges,
    top_k_items,
    weights_entropy,
)
from training.evaluation.harness import evaluate_models, resolve_names
from training.evaluation.report import results_markdown
from training.models.base import TrainingData
from training.trainer import fit

pytestmark = pytest.mark.usefixtures("single_thread")

# A toy graph: node 0 has 4 in-edges, node 1 has 3, node 2 has 1, node 3 none.
DST = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2])
N_NODES = 4


def uniform_alpha(dst: torch.Tensor, n_nodes: int) -> torch.Tensor:
    """α = 1 / in-degree on every edge (what edge_softmax of equal scores gives)."""
    return 1.0 / torch.bincount(dst, minlength=n_nodes)[dst].float()


def test_uniform_attention_has_entropy_one_and_max_ratio_one() -> None:
    alpha = uniform_alpha(DST, N_NODES)
    entropy = attention_entropy(alpha, DST, N_NODES)
    ratio = max_over_uniform(alpha, DST, N_NODES)
    torch.testing.assert_close(entropy[:2], torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(ratio[:2], torch.ones(2, dtype=torch.float64))
    assert entropy[2:].isnan().all() and ratio[2:].isnan().all(), "degree ≤ 1 is excluded"
    summary = attention_summary([alpha, alpha], DST, N_NODES)
    assert summary["attention/layer2/entropy_mean"] == pytest.approx(1.0)
    assert summary["attention/layer1/max_ratio_median"] == pytest.approx(1.0)


def test_one_hot_attention_has_entropy_zero_and_max_ratio_degree() -> None:
    alpha = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0])
    torch.testing.assert_close(attention_entropy(alpha, DST, N_NODES)[:2], torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(max_over_uniform(alpha, DST, N_NODES)[:2], torch.tensor([4.0, 3.0], dtype=torch.float64))


def test_partial_attention_lies_strictly_between() -> None:
    alpha = torch.tensor([0.7, 0.1, 0.1, 0.1, 0.5, 0.25, 0.25, 1.0])
    entropy = attention_entropy(alpha, DST, N_NODES)[0]
    assert float(entropy) == pytest.approx(-(0.7 * math.log(0.7) + 3 * 0.1 * math.log(0.1)) / math.log(4))
    assert float(max_over_uniform(alpha, DST, N_NODES)[0]) == pytest.approx(2.8)


def test_stars_of_degree_at_most_k_are_untouched() -> None:
    alpha = torch.tensor([0.4, 0.3, 0.2, 0.1, 0.5, 0.3, 0.2, 1.0])
    summary = distillation_summary(alpha, DST, N_NODES, top_k_edges(alpha, DST, N_NODES, k=4))
    assert summary == {"distill/share_cut": 0.0, "distill/mass_kept": pytest.approx(1.0)}


def test_distillation_below_degree_cuts_and_keeps_the_top_alpha_mass() -> None:
    alpha = torch.tensor([0.4, 0.3, 0.2, 0.1, 0.5, 0.3, 0.2, 1.0])
    kept = top_k_edges(alpha, DST, N_NODES, k=2)
    assert kept.tolist() == [[0, 1], [4, 5], [7, -1], [-1, -1]]
    summary = distillation_summary(alpha, DST, N_NODES, kept)
    assert summary["distill/share_cut"] == pytest.approx(2 / 3)  # nodes 0 and 1 of the three with in-edges
    assert summary["distill/mass_kept"] == pytest.approx((0.7 + 0.8 + 1.0) / 3)


def test_target_independent_refinement_has_zero_sensitivity_and_target_only_has_one() -> None:
    generator = torch.Generator().manual_seed(0)
    per_centre = torch.randn(5, 1, 8, generator=generator)
    assert conditioning_sensitivity(per_centre.expand(5, 4, 8)) == 0.0
    per_target = torch.randn(1, 4, 8, generator=generator)
    assert conditioning_sensitivity(per_target.expand(5, 4, 8)) == pytest.approx(1.0)
    both = conditioning_sensitivity(per_centre + per_target)
    assert 0.0 < both < 1.0


def test_weights_entropy_is_one_for_uniform_zero_for_one_hot_and_skips_single_neighbour_rows() -> None:
    kept = torch.tensor([[True, True, True, False], [True, True, False, False], [True, False, False, False]])
    uniform = kept / kept.sum(dim=1, keepdim=True)
    one_hot = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    assert weights_entropy(uniform, kept) == pytest.approx(1.0)
    assert weights_entropy(one_hot, kept) == pytest.approx(0.0)
    assert 0.0 < weights_entropy(torch.tensor([[0.6, 0.3, 0.1, 0.0]]), kept[:1]) < 1.0
    assert math.isnan(weights_entropy(one_hot[2:], kept[2:]))  # a single neighbour: nothing to choose between


def test_logit_shares_add_up_to_one_and_name_the_part_that_varies() -> None:
    generator = torch.Generator().manual_seed(0)
    varying, small = torch.randn(500, generator=generator), 0.1 * torch.randn(500, generator=generator)
    shares = logit_shares({"towers": small, "centre_dot": varying, "item_bias": torch.full((500,), 3.0)})
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["item_bias"] == pytest.approx(0.0, abs=1e-12)  # a constant part explains none of the variance
    assert shares["centre_dot"] > 0.9 > 0.1 > shares["towers"]
    assert logit_shares({"towers": varying, "centre_dot": -varying}) == {"towers": 0.0, "centre_dot": 0.0}


def test_identical_rankings_give_jaccard_one_and_coverage_k_over_catalogue() -> None:
    n_users, n_items = 6, 50
    scores = np.tile(np.arange(n_items, dtype=np.float32), (n_users, 1))
    result = personalisation(scores, np.ones_like(scores, dtype=bool))
    assert result["personal/top20_jaccard"] == pytest.approx(1.0)
    assert result["personal/coverage"] == pytest.approx(20 / n_items)
    assert result["personal/item_share"] == pytest.approx(1.0)


def test_disjoint_rankings_give_jaccard_zero_and_full_coverage() -> None:
    scores = np.zeros((2, 40), dtype=np.float32)
    scores[0, :20], scores[1, 20:] = 1.0, 1.0
    top = top_k_items(scores, np.ones_like(scores, dtype=bool), k=20)
    assert mean_pairwise_jaccard(top, 40) == 0.0
    assert catalogue_coverage(top, 40) == 1.0


def test_training_positives_never_enter_the_top_k() -> None:
    scores = np.tile(np.arange(30, dtype=np.float32)[::-1], (3, 1))  # item 0 best for everyone
    candidates = np.ones_like(scores, dtype=bool)
    candidates[1, :5] = False
    top = top_k_items(scores, candidates, k=20)
    assert top[0].tolist() == list(range(20))
    assert top[1].tolist() == list(range(5, 25))


def test_item_only_scores_have_item_share_one_and_user_only_zero() -> None:
    rng = np.random.default_rng(0)
    item, user = rng.normal(size=(1, 30)), rng.normal(size=(12, 1))
    everything = np.ones((12, 30), dtype=bool)
    assert item_main_effect_share(user + item, everything) == pytest.approx(1.0)
    assert item_main_effect_share(np.broadcast_to(user, (12, 30)), everything) == 0.0
    personal = user + rng.normal(size=(12, 30))  # user offsets + independent per-pair noise, no item effect
    assert item_main_effect_share(personal, everything) < 0.2
    assert item_main_effect_share(personal + 10 * item, everything) > 0.9


def test_default_diagnostics_hook_reports_personalisation(training_data: TrainingData) -> None:
    result = fit("bpr_mf", training_data, None, seed=0)
    diagnostics = result.model.diagnostics(training_data)
    assert diagnostics == result.diagnostics
    assert set(diagnostics) == {"personal/item_share", "personal/top20_jaccard", "personal/coverage"}
    assert all(0.0 <= value <= 1.0 for value in diagnostics.values())


def test_cli_train_json_includes_diagnostics_and_mlflow_logs_them(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    write_dataset(synthetic_dataset(), tmp_path / "synthetic")
    settings = Settings(dataset=str(tmp_path / "synthetic"), work_dir=tmp_path / "work")
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = settings

    app.command("train")(train_cli.train)
    # --register publishes and materializes the version's features: Feast's status lines must not reach stdout
    trained = CliRunner().invoke(app, ["train", "--model", "popularity", "--seed", "1", "--register", "--json"])
    assert trained.exit_code == 0, trained.output
    document = json.loads(trained.stdout)
    assert document["model"] == "popularity" and document["epochs_run"] == 0 and document["version"] == 1
    assert set(document["diagnostics"]) == {"personal/item_share", "personal/top20_jaccard", "personal/coverage"}
    metrics = MlflowClient(settings.mlflow_uri).get_run(document["run_id"]).data.metrics
    for key, value in document["diagnostics"].items():
        assert metrics[f"diag_{key}"] == pytest.approx(value)
    assert not math.isnan(metrics["test_auc"])


def test_evaluate_all_includes_popularity_reported_as_the_floor() -> None:
    assert "popularity" in resolve_names("all")
    table = evaluate_models(["popularity"], [0, 1], synthetic_dataset(), n_users=10)
    assert list(table["epochs_run"]) == [0, 0] and table["auc"].notna().all()
    text = results_markdown(table, "graphrec evaluate --models popularity --seeds 2", 1.0)
    row = next(line for line in text.splitlines() if line.startswith("| popularity |"))
    assert row.count("±") == 6 and "n/a" in row  # every metric and valid AUC measured; no seconds per epoch
    assert "the floor every model should clear" in text
