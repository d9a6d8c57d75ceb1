"""Offline evaluation of the intent topics (issue 12): each user's document is split into an observed part (80 % of
its tokens, seeded binomial thinning) that the models see and a held-out part they are judged on.

Metrics, overall and per activity tercile (training/data/splits.py): held-out perplexity; Recall@20 of the held-out
tags a user's observed document lacks, ranked by p(w | θ_u); Recall@20 of the user's test positives (the CTR split's),
items ranked by the mean p(w | θ_u) of their profile tags; cosine of θ between friends and between random pairs.
Topic-level: NPMI coherence of each topic's top 10 tags on the held-out parts, and topic diversity (the share of
distinct tags among every topic's top 25). Compared: the full model, each ablation, and scikit-learn's LDA.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.decomposition import LatentDirichletAllocation

from training.data.dataset import Dataset
from training.data.splits import TERCILE_NAMES, activity_terciles, ctr_split
from training.dgl_compat import dgl
from training.evaluation.metrics import recall_ndcg_at_k
from training.topics.config import TopicConfig
from training.topics.documents import Documents, build_documents
from training.topics.fit import fit_topics
from training.topics.graph import intent_graph

HELD_OUT_SHARE = 0.2
K_RECALL = 20
COHERENCE_WORDS = 10
DIVERSITY_WORDS = 25
LDA = "sklearn LDA"


@dataclass(frozen=True)
class Variant:
    """One compared model: a name and, for graphrec's model, its config (None: scikit-learn's LDA)."""

    name: str
    config: TopicConfig | None


@dataclass
class VariantResult:
    """A variant's metrics: ``groups`` maps 'all' and each tercile name to its metric values."""

    name: str
    seconds: float
    npmi: float
    diversity: float
    groups: dict[str, dict[str, float]] = field(default_factory=dict)
    top_words: list[list[str]] = field(default_factory=list)


def variants(config: TopicConfig) -> list[Variant]:
    """The full model, its two ablations and the LDA baseline, all with the same K and seed."""
    return [
        Variant("full (GNN + embedded decoder)", config),
        Variant("no GNN", config.model_copy(update={"gnn": False})),
        Variant("free decoder", config.model_copy(update={"embedded_decoder": False})),
        Variant(LDA, None),
    ]


def split_tokens(counts: sp.csr_matrix, share: float, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(observed, held-out) count matrices: each token is held out with probability ``share``, seeded."""
    coo = counts.tocoo()
    held = np.random.default_rng(seed).binomial(coo.data.astype(np.int64), share).astype(np.float32)
    shape = counts.shape
    observed = sp.csr_matrix((coo.data - held, (coo.row, coo.col)), shape=shape)
    held_out = sp.csr_matrix((held, (coo.row, coo.col)), shape=shape)
    observed.eliminate_zeros()
    held_out.eliminate_zeros()
    return observed, held_out


def log_likelihoods(word_probs: np.ndarray, held: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Per user: the held-out tokens' summed log-probability and their count."""
    coo = held.tocoo()
    logs = coo.data * np.log(np.maximum(word_probs[coo.row, coo.col], 1e-12))
    n_users = held.shape[0]
    return np.bincount(coo.row, logs, n_users), np.bincount(coo.row, coo.data, n_users)


def npmi(top: np.ndarray, reference: sp.csr_matrix) -> float:
    """Mean NPMI over topics of their top words' pairs, by document co-occurrence in ``reference`` (a pair never
    seen together counts -1, its lower bound)."""
    present = (reference > 0).astype(np.float64).tocsc()
    n_docs = reference.shape[0]
    scores = []
    for words in top:
        columns = present[:, words]
        together = (columns.T @ columns).toarray() / n_docs
        alone = np.diag(together)
        values = []
        for i in range(len(words)):
            for j in range(i + 1, len(words)):
                joint = together[i, j]
                if joint == 0:
                    values.append(-1.0)
                elif joint == 1:
                    values.append(1.0)
                else:
                    values.append(np.log(joint / (alone[i] * alone[j])) / -np.log(joint))
        scores.append(np.mean(values))
    return float(np.mean(scores))


def diversity(beta: np.ndarray, n: int = DIVERSITY_WORDS) -> float:
    """Distinct words among every topic's top ``n``, over K * n (1: no topic repeats another's words)."""
    top = np.argsort(-beta, axis=1, kind="stable")[:, :n]
    return len(np.unique(top)) / top.size


def cosine_pairs(theta: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Cosine of θ between each (left[i], right[i]) user pair."""
    unit = theta / np.maximum(np.linalg.norm(theta, axis=1, keepdims=True), 1e-12)
    return (unit[left] * unit[right]).sum(axis=1)


def _recall(scores: np.ndarray, relevant: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Per-user Recall@20 (NaN without relevant entries) with ``excluded`` entries never ranked."""
    masked = torch.from_numpy(np.where(excluded, -np.inf, scores))
    recall, _ = recall_ndcg_at_k(masked, torch.from_numpy(relevant), K_RECALL)
    return recall


@dataclass(frozen=True)
class EvaluationData:
    """Everything every variant is fitted on and judged by."""

    documents: Documents
    observed: sp.csr_matrix
    held: sp.csr_matrix
    terciles: np.ndarray
    train_items: np.ndarray  # (n_users, n_items) bool: training positives, never ranked
    test_items: np.ndarray  # (n_users, n_items) bool: the test positives to recall
    friends: tuple[np.ndarray, np.ndarray]  # each friendship both ways
    strangers: tuple[np.ndarray, np.ndarray]  # as many seeded random pairs of distinct users


def _user_item_matrix(pairs: pd.DataFrame, n_users: int, n_items: int) -> np.ndarray:
    """(n_users, n_items) bool, True at each (user, item) of ``pairs``."""
    matrix = np.zeros((n_users, n_items), dtype=bool)
    matrix[pairs["user"].to_numpy(), pairs["item"].to_numpy()] = True
    return matrix


def evaluation_data(dataset: Dataset, config: TopicConfig, seed: int) -> tuple[EvaluationData, dgl.DGLGraph]:
    """The held-out split of the documents and the graph of training positives (returned second)."""
    split = ctr_split(dataset.interactions, seed)
    positives = split.train_positives()
    held_pairs = pd.concat([split.valid, split.test])
    documents = build_documents(dataset, positives, config, exclude_pairs=held_pairs)
    observed, held = split_tokens(documents.users, HELD_OUT_SHARE, seed)
    tokens = np.asarray(documents.vocabulary.tokens, dtype=object)
    observed_sentences = [list(tokens[observed[u].indices]) for u in range(observed.shape[0])]
    # the skip-gram corpus sees the observed parts only: the held-out tokens are what the models are judged on
    documents = replace(documents, user_sentences=[s for s in observed_sentences if s])
    rng = np.random.default_rng(seed)
    social = dataset.social
    left = np.r_[social["user"].to_numpy(), social["friend"].to_numpy()]
    right = np.r_[social["friend"].to_numpy(), social["user"].to_numpy()]
    a = rng.integers(0, dataset.n_users, len(left))
    b = (a + rng.integers(1, dataset.n_users, len(left))) % dataset.n_users  # never a == b
    test = split.test[split.test["label"] == 1]
    data = EvaluationData(
        documents=documents,
        observed=observed,
        held=held,
        terciles=activity_terciles(positives, dataset.n_users),
        train_items=_user_item_matrix(positives, dataset.n_users, dataset.n_items),
        test_items=_user_item_matrix(test, dataset.n_users, dataset.n_items),
        friends=(left, right),
        strangers=(a, b),
    )
    return data, intent_graph(dataset, positives)


def fit_lda(observed: sp.csr_matrix, config: TopicConfig) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's batch variational LDA with the same K and seed: (θ, β)."""
    lda = LatentDirichletAllocation(
        n_components=config.n_topics, learning_method="batch", max_iter=50, random_state=config.seed, n_jobs=1
    )
    theta = lda.fit_transform(observed)
    theta = theta / theta.sum(axis=1, keepdims=True)
    beta = lda.components_ / lda.components_.sum(axis=1, keepdims=True)
    return theta.astype(np.float32), beta.astype(np.float32)


def score(name: str, theta: np.ndarray, beta: np.ndarray, data: EvaluationData, seconds: float) -> VariantResult:
    """Every metric of one fitted variant."""
    word_probs = theta @ beta
    log_lik, n_tokens = log_likelihoods(word_probs, data.held)
    held, observed = data.held.toarray() > 0, data.observed.toarray() > 0
    tag_recall = _recall(word_probs, held & ~observed, observed)
    items = data.documents.items
    profile = sp.diags(1.0 / np.maximum(np.asarray(items.sum(axis=1)).ravel(), 1.0)) @ items
    item_recall = _recall(np.asarray(profile @ word_probs.T).T, data.test_items, data.train_items)
    friend_cos = cosine_pairs(theta, *data.friends)
    stranger_cos = cosine_pairs(theta, *data.strangers)
    top_coherence = np.argsort(-beta, axis=1, kind="stable")[:, :COHERENCE_WORDS]
    result = VariantResult(
        name=name,
        seconds=seconds,
        npmi=npmi(top_coherence, data.held),
        diversity=diversity(beta),
        top_words=[[data.documents.vocabulary.tokens[j] for j in row] for row in top_coherence],
    )
    groups = {"all": np.ones(len(theta), dtype=bool)} | {
        TERCILE_NAMES[t]: data.terciles == t for t in range(len(TERCILE_NAMES))
    }
    for group, users in groups.items():
        friends_in, strangers_in = users[data.friends[0]], users[data.strangers[0]]
        result.groups[group] = {
            "perplexity": float(np.exp(-log_lik[users].sum() / max(n_tokens[users].sum(), 1.0))),
            "recall_tags": float(np.nanmean(tag_recall[users])),
            "recall_items": float(np.nanmean(item_recall[users])),
            "cos_friends": float(friend_cos[friends_in].mean()),
            "cos_random": float(stranger_cos[strangers_in].mean()),
            "users_tags": int((~np.isnan(tag_recall[users])).sum()),
            "users_items": int((~np.isnan(item_recall[users])).sum()),
        }
    return result


def evaluate_topics(
    dataset: Dataset,
    config: TopicConfig,
    seed: int,
    on_variant: Callable[[str], None] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> list[VariantResult]:
    """Fit every variant on the observed parts of the same documents and score it on the held-out parts."""
    data, graph = evaluation_data(dataset, config, seed)
    results = []
    for variant in variants(config):
        if on_variant is not None:
            on_variant(variant.name)
        started = time.perf_counter()
        if variant.config is None:
            theta, beta = fit_lda(data.observed, config)
        else:
            fit = fit_topics(data.documents, graph, variant.config, counts=data.observed, on_epoch=on_epoch)
            theta, beta = fit.theta, fit.beta
        results.append(score(variant.name, theta, beta, data, time.perf_counter() - started))
    return results
