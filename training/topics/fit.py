"""Fitting the intent topic model: seeded, full-batch variational inference (reparameterised ELBO), then each
user's intent mixture θ_u = softmax(μ_u) at the posterior mean."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from training.dgl_compat import dgl
from training.topics.config import TopicConfig
from training.topics.documents import Documents
from training.topics.model import IntentTopicModel
from training.topics.prior import kl_to_prior, laplace_dirichlet_prior
from training.topics.skipgram import train_skipgram
from training.topics.vocabulary import Vocabulary

EPSILON = 1e-10


@dataclass
class TopicFit:
    """A fitted topic model: each user's intent mixture, the topic-word distributions and the training curve."""

    config: TopicConfig
    vocabulary: Vocabulary
    theta: np.ndarray  # (n_users, K) float32, rows sum to 1
    beta: np.ndarray  # (K, V) float32, rows sum to 1
    history: list[dict[str, float]]

    def top_words(self, n: int) -> list[list[str]]:
        """The ``n`` most probable tokens of every topic."""
        order = np.argsort(-self.beta, axis=1, kind="stable")[:, :n]
        return [[self.vocabulary.tokens[j] for j in row] for row in order]


def log_counts(matrix: sp.csr_matrix) -> torch.Tensor:
    """The encoder's input: log(1 + count) as a torch sparse COO tensor. Raw counts (ProdLDA) let the longest
    documents dominate the hidden layer; counts normalised to sum 1 (ETM) left the hidden layer nearly constant
    across users on Last.FM, and with it every mixture."""
    coo = matrix.tocoo()
    coo.data = np.log1p(coo.data)
    indices = torch.as_tensor(np.vstack([coo.row, coo.col]), dtype=torch.int64)
    values = torch.as_tensor(coo.data, dtype=torch.float32)
    return torch.sparse_coo_tensor(indices, values, coo.shape, check_invariants=True).coalesce()


def _dropped(inputs: torch.Tensor, rate: float) -> torch.Tensor:
    """Dropout applied to the stored values of a sparse tensor."""
    values = torch.nn.functional.dropout(inputs.values(), rate, training=True)
    return torch.sparse_coo_tensor(inputs.indices(), values, inputs.shape, check_invariants=False).coalesce()


def fit_topics(
    documents: Documents,
    graph: dgl.DGLGraph,
    config: TopicConfig,
    counts: sp.csr_matrix | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> TopicFit:
    """Train the model on the user documents (or on ``counts``, e.g. the observed part of each document in an
    evaluation) and return every user's θ; the same inputs and seed give the same numbers."""
    torch.manual_seed(config.seed)
    counts = documents.users if counts is None else counts
    word_vectors = None
    if config.embedded_decoder:
        word_vectors = torch.from_numpy(train_skipgram(documents.sentences, documents.vocabulary, config))
    model = IntentTopicModel(len(documents.vocabulary), config, word_vectors)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    prior_mean, prior_var = laplace_dirichlet_prior(config.n_topics, config.prior_alpha)
    users, items = log_counts(counts), log_counts(documents.items)
    dense_counts = torch.from_numpy(counts.toarray().astype(np.float32))  # dense log-likelihood: faster than a gather
    history: list[dict[str, float]] = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        mu, logvar = model.encode(_dropped(users, config.dropout), _dropped(items, config.dropout), graph)
        theta = torch.softmax(mu + (0.5 * logvar).exp() * torch.randn_like(mu), dim=1)
        beta = model.beta()
        recon = -(dense_counts * (theta @ beta + EPSILON).log()).sum(dim=1)
        kl = kl_to_prior(mu, logvar, prior_mean, prior_var)
        weight = min(1.0, epoch / (config.kl_warmup * config.epochs)) if config.kl_warmup else 1.0
        loss = (recon + weight * kl).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        record = {"epoch": epoch, "loss": loss.item(), "recon": recon.mean().item(), "kl": kl.mean().item()}
        record["kl_weight"] = weight
        history.append(record)
        if on_epoch is not None:
            on_epoch(epoch, record)
    model.eval()
    with torch.no_grad():
        mu, _ = model.encode(users, items, graph)
        theta = torch.softmax(mu, dim=1).numpy().astype(np.float32)
        beta = model.beta().numpy().astype(np.float32)
    return TopicFit(config, documents.vocabulary, theta, beta, history)
