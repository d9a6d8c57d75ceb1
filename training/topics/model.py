"""The embedded topic model with a logistic-normal prior and a graph encoder (issue 12).

Encoder: a user's bag of tags (log 1 + count) -> hidden vector; with ``gnn`` on, rounds of mean message passing over
friends and consumed items (whose own input is their tag profile) mix in the neighbourhood, so a user with few tags
borrows from friends and items; then μ and log σ². Decoder: topic-word distributions β_k = softmax(ρ α_k) with ρ the
fixed skip-gram vectors (Dieng et al. 2020), or, with ``embedded_decoder`` off, a free K x V matrix of logits.
"""

from __future__ import annotations

import torch
from torch import nn

from training.dgl_compat import dgl, fn
from training.topics.config import TopicConfig
from training.topics.graph import CONSUMED_BY, CONSUMES, FRIEND


def sparse_linear(layer: nn.Linear, inputs: torch.Tensor) -> torch.Tensor:
    """``layer(inputs)`` for a sparse (n, V) input without densifying it (documents are mostly zeros)."""
    return torch.sparse.mm(inputs, layer.weight.t()) + layer.bias


class GraphLayer(nn.Module):
    """One round of message passing: a user hears the mean of its friends and of its items, an item the mean of its
    users; residual and layer norm keep the node's own signal."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.user_self = nn.Linear(hidden, hidden)
        self.from_friends = nn.Linear(hidden, hidden, bias=False)
        self.from_items = nn.Linear(hidden, hidden, bias=False)
        self.item_self = nn.Linear(hidden, hidden)
        self.from_users = nn.Linear(hidden, hidden, bias=False)
        self.user_norm = nn.LayerNorm(hidden)
        self.item_norm = nn.LayerNorm(hidden)

    def forward(
        self, graph: dgl.DGLGraph, users: torch.Tensor, items: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """New (user, item) hidden vectors after one round."""
        with graph.local_scope():
            graph.nodes["user"].data["h"] = users
            graph.nodes["item"].data["h"] = items
            graph.update_all(fn.copy_u("h", "m"), fn.mean("m", "friends"), etype=FRIEND)
            graph.update_all(fn.copy_u("h", "m"), fn.mean("m", "items"), etype=CONSUMED_BY)
            graph.update_all(fn.copy_u("h", "m"), fn.mean("m", "users"), etype=CONSUMES)
            friends = graph.nodes["user"].data["friends"]
            consumed = graph.nodes["user"].data["items"]
            audience = graph.nodes["item"].data["users"]
        user_update = self.user_self(users) + self.from_friends(friends) + self.from_items(consumed)
        item_update = self.item_self(items) + self.from_users(audience)
        return self.user_norm(users + torch.relu(user_update)), self.item_norm(items + torch.relu(item_update))


class IntentTopicModel(nn.Module):
    """Encoder to (μ, log σ²) of each user's logistic-normal intent posterior, and the topic-word decoder."""

    def __init__(self, vocab_size: int, config: TopicConfig, word_vectors: torch.Tensor | None) -> None:
        super().__init__()
        if config.embedded_decoder and word_vectors is None:
            raise ValueError("the embedded decoder needs the skip-gram word vectors")
        self.config = config
        self.user_in = nn.Linear(vocab_size, config.hidden)
        self.hidden_norm = nn.LayerNorm(config.hidden)
        self.item_in = nn.Linear(vocab_size, config.hidden) if config.gnn else None
        self.layers = nn.ModuleList(GraphLayer(config.hidden) for _ in range(config.gnn_layers if config.gnn else 0))
        self.to_mu = nn.Linear(config.hidden, config.n_topics)
        self.to_logvar = nn.Linear(config.hidden, config.n_topics)
        # batch norm without affine on μ and log σ² (ProdLDA's remedy): without it every user's posterior collapses
        # onto the prior and all mixtures come out the same
        self.mu_norm = nn.BatchNorm1d(config.n_topics, affine=False)
        self.logvar_norm = nn.BatchNorm1d(config.n_topics, affine=False)
        if config.embedded_decoder:
            assert word_vectors is not None
            self.register_buffer("rho", word_vectors)  # fixed: rare tags keep the skip-gram neighbours' geometry
            self.alpha = nn.Parameter(torch.randn(config.n_topics, word_vectors.shape[1]) * 0.1)
        else:
            self.logits = nn.Parameter(torch.randn(config.n_topics, vocab_size) * 0.1)

    def encode(
        self, users: torch.Tensor, items: torch.Tensor, graph: dgl.DGLGraph
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """μ and log σ² (each (n_users, K)) from sparse log-count user documents and item tag profiles."""
        # softplus, not relu: with relu the input layer can die for every user and all mixtures come out the same
        hidden = self.hidden_norm(nn.functional.softplus(sparse_linear(self.user_in, users)))
        if self.item_in is not None:
            item_hidden = nn.functional.softplus(sparse_linear(self.item_in, items))
            for layer in self.layers:
                hidden, item_hidden = layer(graph, hidden, item_hidden)
        return self.mu_norm(self.to_mu(hidden)), self.logvar_norm(self.to_logvar(hidden))

    def beta(self) -> torch.Tensor:
        """Topic-word distributions, shape (K, V), rows summing to 1."""
        logits = self.alpha @ self.rho.t() if self.config.embedded_decoder else self.logits
        return torch.softmax(logits, dim=1)
