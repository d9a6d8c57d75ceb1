"""The user-intent topic model (issue 12): the KL term against its closed form, θ on the simplex, seeded
determinism, a tiny end-to-end fit in which the graph encoder lets document-less users borrow from friends, the
evaluation metrics on hand-checkable inputs, and clear errors for unusable input."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from tests.support.topics import tagged_dataset
from training.data.dataset import Dataset
from training.data.splits import ctr_split
from training.topics.config import TopicConfig
from training.topics.documents import build_documents
from training.topics.errors import TopicInputError
from training.topics.evaluate import diversity, npmi, split_tokens
from training.topics.fit import TopicFit, fit_topics
from training.topics.graph import intent_graph
from training.topics.operations import audience, summarise
from training.topics.pipeline import intent_columns
from training.topics.prior import kl_to_prior, laplace_dirichlet_prior

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = TopicConfig(n_topics=4, epochs=60, hidden=16, embedding_dim=8, skipgram_epochs=5, min_users=2, seed=7)


def _fit(config: TopicConfig = TINY, dataset: Dataset | None = None) -> TopicFit:
    """A tiny fit on ``dataset`` (default: the tagged genre dataset) with all its positives."""
    dataset = dataset or tagged_dataset()
    positives = dataset.positives
    documents = build_documents(dataset, positives, config)
    return fit_topics(documents, intent_graph(dataset, positives), config)


def test_prior_is_the_laplace_approximation_of_a_symmetric_dirichlet() -> None:
    mean, variance = laplace_dirichlet_prior(4, 1.0)
    assert torch.allclose(mean, torch.zeros(4))
    assert torch.allclose(variance, torch.full((4,), (1 - 2 / 4) + 4 / 16))  # (1 - 2/K)/α + K(1/α)/K²
    mean, variance = laplace_dirichlet_prior(2, 0.5)
    assert torch.allclose(variance, torch.full((2,), 2 * 0 + 4 / 4))


def test_kl_equals_its_closed_form_on_a_toy_case() -> None:
    mu = torch.tensor([[0.5, -1.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, np.log(0.25)], [np.log(2.0), np.log(2.0)]], dtype=torch.float32)
    prior_mean, prior_var = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 2.0])
    kl = kl_to_prior(mu, logvar, prior_mean, prior_var)
    # row 0, by hand: 0.5 * [(1 + 0.25 - 1 + 0) + (0.25/2 + 1/2 - 1 + ln 2 - ln 0.25)]
    by_hand = 0.5 * ((1 + 0.25 - 1) + (0.125 + 0.5 - 1 + np.log(2) - np.log(0.25)))
    assert kl[0].item() == pytest.approx(by_hand, rel=1e-6)
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, (0.5 * logvar).exp()), torch.distributions.Normal(prior_mean, prior_var.sqrt())
    ).sum(dim=1)
    assert torch.allclose(kl, reference, atol=1e-6)
    assert kl_to_prior(prior_mean[None], prior_var.log()[None], prior_mean, prior_var).item() == pytest.approx(0.0)


def test_theta_and_beta_rows_sum_to_one_and_users_split_by_genre() -> None:
    dataset = tagged_dataset()
    fit = _fit(dataset=dataset)
    assert fit.theta.shape == (40, 4) and fit.beta.shape == (4, len(fit.vocabulary))
    np.testing.assert_allclose(fit.theta.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(fit.beta.sum(axis=1), 1.0, atol=1e-5)
    assert fit.history[-1]["loss"] < fit.history[0]["loss"]
    columns = intent_columns(fit.theta)
    np.testing.assert_array_equal(columns["dominant_topic"], fit.theta.argmax(axis=1))
    np.testing.assert_allclose(columns["dominant_weight"], fit.theta.max(axis=1))
    genres = dataset.kg[dataset.kg["relation"] == 0].sort_values("head")["tail"].to_numpy() - dataset.n_items
    taste = genres[dataset.positives.groupby("user")["item"].first().reindex(range(40)).to_numpy()]
    dominant = columns["dominant_topic"]
    purity = sum(np.bincount(taste[dominant == k]).max() for k in np.unique(dominant)) / len(taste)
    assert purity >= 0.9  # every user likes one genre only: the dominant intent should tell the genres apart
    assert len(np.unique(dominant)) >= 3


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    first, second = _fit(), _fit()
    np.testing.assert_array_equal(first.theta, second.theta)
    np.testing.assert_array_equal(first.beta, second.beta)
    other = _fit(TINY.model_copy(update={"seed": 8}))
    assert not np.allclose(first.theta, other.theta)


def test_graph_encoder_lets_users_without_tags_borrow_from_friends() -> None:
    dataset = tagged_dataset()
    silent = [0, 1, 2, 3]  # their own tags and their items are removed: empty documents, friends kept
    positives = dataset.positives[~dataset.positives["user"].isin(silent)]
    dataset = replace(dataset, tags=dataset.tags[~dataset.tags["user"].isin(silent)])
    documents = build_documents(dataset, positives, TINY)
    assert documents.lengths[silent].sum() == 0
    graph = intent_graph(dataset, positives)
    with_gnn = fit_topics(documents, graph, TINY).theta[silent]
    without = fit_topics(documents, graph, TINY.model_copy(update={"gnn": False})).theta[silent]
    np.testing.assert_allclose(without, without[[0, 0, 0, 0]], atol=1e-6)  # nothing tells them apart
    friended = [u for u in silent if (dataset.social == u).any(axis=None)]
    assert len(friended) >= 2
    rows = with_gnn[[silent.index(u) for u in friended]]
    assert np.abs(rows - rows[0]).max() > 1e-3  # each hears its own friends


def test_free_decoder_ablation_fits_and_differs() -> None:
    free = _fit(TINY.model_copy(update={"embedded_decoder": False}))
    np.testing.assert_allclose(free.beta.sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(free.beta, _fit().beta)


def test_documents_drop_held_out_pairs_and_rare_tags() -> None:
    dataset = tagged_dataset()
    split = ctr_split(dataset.interactions, 0)
    held = pd.concat([split.valid, split.test])
    documents = build_documents(dataset, split.train_positives(), TINY, exclude_pairs=held)
    everything = build_documents(dataset, dataset.positives, TINY)
    assert documents.users.sum() < everything.users.sum()
    on_held = dataset.tags.merge(held[["user", "item"]], on=["user", "item"], how="left", indicator=True)
    kept = on_held["_merge"] == "left_only"
    assert not kept.all()  # some tag rows sit on held-out pairs, or the test proves nothing
    stripped = replace(dataset, tags=dataset.tags[kept.to_numpy()])
    same = build_documents(stripped, split.train_positives(), TINY)
    assert same.vocabulary == documents.vocabulary
    assert (same.users != documents.users).nnz == 0


def test_dataset_without_tags_is_refused_by_name() -> None:
    dataset = replace(tagged_dataset(), tags=None, name="no-tags")
    with pytest.raises(TopicInputError, match="dataset 'no-tags' has no tag assignments"):
        build_documents(dataset, dataset.positives, TINY)
    with pytest.raises(TopicInputError, match="no tag is shared by 10000 users"):
        build_documents(tagged_dataset(), tagged_dataset().positives, TINY.model_copy(update={"min_users": 10_000}))


def test_split_tokens_keeps_every_token_once() -> None:
    counts = sp.csr_matrix(np.array([[5, 0, 2], [0, 1, 9]], dtype=np.float32))
    observed, held = split_tokens(counts, 0.3, seed=0)
    np.testing.assert_array_equal((observed + held).toarray(), counts.toarray())
    assert held.sum() > 0 and observed.sum() > 0


def test_npmi_and_diversity_on_hand_checkable_inputs() -> None:
    reference = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 1]]))
    assert npmi(np.array([[0, 1]]), reference) == pytest.approx(1.0)  # always together
    assert npmi(np.array([[0, 2]]), reference) == pytest.approx(-1.0)  # never together
    beta = np.array([[0.5, 0.3, 0.2, 0.0], [0.5, 0.3, 0.0, 0.2]])
    assert diversity(beta, n=2) == pytest.approx(0.5)  # both topics' top 2 are {0, 1}


def test_summary_and_audience() -> None:
    from training.topics.artefacts import SavedTopics

    theta = np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]], dtype=np.float32)
    saved = SavedTopics(TINY, ("a", "b"), theta, np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 2, 0]), "d", "f")
    summaries = summarise(saved, 1)
    assert [(s.size, s.top_words, s.sparse_share) for s in summaries] == [(2, ["a"], 1.0), (1, ["b"], 0.0)]
    frame = audience(saved, 1, 2)
    assert frame["user_id"].tolist() == [1, 2] and frame["topic_rank"].tolist() == [1, 2]
    assert frame["activity_tercile"].tolist() == ["active", "sparse"]
    with pytest.raises(TopicInputError, match="--topic 2 is out of range: the model has 2 topics, 0 to 1"):
        audience(saved, 2, 5)
