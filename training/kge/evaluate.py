"""Filtered link prediction: rank each held-out triple's true head and true tail against all entities.

Other known true triples (train + valid + test) are removed from the candidates so the model is not penalised for
ranking a different correct answer first. Ties get the realistic rank, the mean of the optimistic and pessimistic
ranks, so a model that scores everything equal gets the random-guess rank instead of rank 1.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from training.kge.interactions import distance_to_all, project
from training.kge.transh import TransH


class KnownAnswers:
    """CSR index of known answers: for a (entity, relation) key, the entities that complete a true triple."""

    def __init__(self, keys: np.ndarray, answers: np.ndarray, n_relations: int):
        order = np.argsort(keys, kind="stable")
        self.keys, self.answers, self.n_relations = keys[order], answers[order], n_relations

    @classmethod
    def for_tails(cls, triples: np.ndarray, n_relations: int) -> KnownAnswers:
        """Known tails of each (head, relation)."""
        return cls(triples[:, 0] * n_relations + triples[:, 1], triples[:, 2], n_relations)

    @classmethod
    def for_heads(cls, triples: np.ndarray, n_relations: int) -> KnownAnswers:
        """Known heads of each (tail, relation)."""
        return cls(triples[:, 2] * n_relations + triples[:, 1], triples[:, 0], n_relations)

    def mask_positions(self, anchors: np.ndarray, relations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, entity) positions of every known answer of query i = (anchors[i], relations[i]), vectorised."""
        query = anchors * self.n_relations + relations
        start = np.searchsorted(self.keys, query, side="left")
        length = np.searchsorted(self.keys, query, side="right") - start
        rows = np.repeat(np.arange(len(query)), length)
        offsets = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
        return rows, self.answers[np.repeat(start, length) + offsets]


def realistic_ranks(distances: Tensor, targets: Tensor) -> Tensor:
    """1-based realistic rank of ``targets`` (B,) among the rows of candidate ``distances`` (B, N); lower is better.

    ``distances`` must hold +inf wherever a candidate is filtered out, the target's own column included.
    Realistic rank = (optimistic + pessimistic) / 2 = 1 + #better + #tied / 2.
    """
    better = (distances < targets.unsqueeze(1)).sum(dim=1)
    ties = (distances == targets.unsqueeze(1)).sum(dim=1)
    return 1.0 + better.double() + 0.5 * ties.double()


@torch.no_grad()
def _side_ranks(
    model: TransH,
    triples: np.ndarray,
    known: KnownAnswers,
    predict_head: bool,
    batch_size: int,
    n_candidates: int | None = None,
) -> np.ndarray:
    """Realistic filtered ranks for head (or tail) prediction of every triple, ``batch_size`` queries at a time,
    against the first ``n_candidates`` nodes (default: all)."""
    tables = (model.entity, model.normal, model.translation)
    entities, normals, translations = (table.weight.detach().cpu().double() for table in tables)
    candidates = entities[:n_candidates]
    anchor_col, answer_col = (2, 0) if predict_head else (0, 2)
    sign = -1.0 if predict_head else 1.0
    ranks = []
    for start in range(0, len(triples), batch_size):
        batch = triples[start : start + batch_size]
        anchor, rel, answer = (torch.from_numpy(batch[:, c]) for c in (anchor_col, 1, answer_col))
        w = normals[rel]
        query = project(entities[anchor], w) + sign * translations[rel]
        distances = distance_to_all(query, w, candidates)
        target = distances.gather(1, answer.unsqueeze(1)).squeeze(1)
        rows, cols = known.mask_positions(batch[:, anchor_col], batch[:, 1])
        inside = cols < len(candidates)  # known answers outside the candidates compete with nothing
        distances[torch.from_numpy(rows[inside]), torch.from_numpy(cols[inside])] = torch.inf
        distances.scatter_(1, answer.unsqueeze(1), torch.inf)
        ranks.append(realistic_ranks(distances, target).numpy())
    return np.concatenate(ranks) if ranks else np.empty(0)


def rank_triples(
    model: TransH,
    triples: np.ndarray,
    known_triples: np.ndarray,
    batch_size: int = 256,
    n_candidates: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Filtered realistic (head ranks, tail ranks) of (N, 3) ``triples``, every triple in ``known_triples`` filtered.

    Scored on the CPU in float64 (so near-ties are not artefacts of rounding); memory O(batch_size · n_candidates).
    ``n_candidates`` ranks against the first that many nodes only (every node by default): on the collaborative KG the
    KG entities, which lead the node ids, since a user is never the head or tail of a KG relation; at 10^6 users that
    is about 1/35 of the nodes, and ranking a KG triple against every user made the evaluation take most of an hour.
    """
    n_relations = model.normal.num_embeddings
    for_heads, for_tails = (
        KnownAnswers.for_heads(known_triples, n_relations),
        KnownAnswers.for_tails(known_triples, n_relations),
    )
    heads = _side_ranks(model, triples, for_heads, True, batch_size, n_candidates)
    tails = _side_ranks(model, triples, for_tails, False, batch_size, n_candidates)
    return heads, tails


def rank_metrics(ranks: np.ndarray, ks: tuple[int, ...] = (1, 3, 10)) -> dict[str, float]:
    """MRR, mean rank and Hits@k of 1-based ranks."""
    metrics = {"mrr": float(np.mean(1.0 / ranks)), "mean_rank": float(np.mean(ranks))}
    metrics.update({f"hits@{k}": float(np.mean(ranks <= k)) for k in ks})
    return metrics


def evaluate(
    model: TransH,
    triples: np.ndarray,
    known_triples: np.ndarray,
    batch_size: int = 256,
    n_candidates: int | None = None,
) -> dict[str, float]:
    """Filtered link-prediction metrics over both sides (``mrr``, ``hits@k``...) plus ``head_mrr`` and ``tail_mrr``,
    ranking against the first ``n_candidates`` nodes (default: all; see :func:`rank_triples`)."""
    heads, tails = rank_triples(model, triples, known_triples, batch_size, n_candidates)
    metrics = rank_metrics(np.concatenate((heads, tails)))
    metrics.update(head_mrr=rank_metrics(heads)["mrr"], tail_mrr=rank_metrics(tails)["mrr"])
    return metrics
