"""The TransH feature family: train TransH on the collaborative KG, evaluated by link prediction on held-out KG.

Held-out triples are KG triples only (interact edges all stay in training), split twin-aware (training.kge.split) so
that no test triple has a twin — same entity pair under another relation or direction — in training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from training.data.dataset import Dataset
from training.graphs.ckg import CollaborativeKG
from training.kge.evaluate import evaluate
from training.kge.split import twin_aware_split
from training.kge.train import TransHConfig, fit

FEATURE_JOB_TRANSH = TransHConfig(epochs=60, eval_every=10, patience=2)
"""TransH defaults of the feature job: early stopping on held-out KG MRR every 10 epochs."""


@dataclass
class TransHResult:
    """Node embeddings of the CKG (entities then users), link-prediction metrics and the training history."""

    embeddings: np.ndarray
    test_metrics: dict[str, float]
    history: list[dict]
    n_train_triples: int
    n_test_triples: int


def train_transh(
    dataset: Dataset,
    ckg: CollaborativeKG,
    config: TransHConfig,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> TransHResult:
    """Train TransH on the CKG minus held-out KG triples; report filtered MRR/Hits@10 on the held-out test triples,
    ranked against the KG entities (a user is never a KG relation's head or tail)."""
    kg = dataset.kg[["head", "relation", "tail"]].to_numpy(dtype=np.int64)
    split = twin_aware_split(kg, seed=config.seed)
    held_out = np.concatenate([split.valid, split.test])
    keep = ~_rows_in(ckg.triples, _with_inverses(held_out, dataset.n_relations))
    train = ckg.triples[keep]
    has_valid = len(split.valid) > 0
    model, history = fit(
        train,
        ckg.n_nodes,
        ckg.n_relations,
        config if has_valid else replace(config, eval_every=0),
        valid=split.valid if has_valid else None,
        on_epoch=on_epoch,
        n_candidates=ckg.n_entities,
    )
    model.eval()
    metrics = evaluate(model, split.test, ckg.triples, n_candidates=ckg.n_entities) if len(split.test) else {}
    return TransHResult(
        embeddings=model.entity.weight.detach().numpy().astype(np.float32),
        test_metrics=metrics,
        history=history,
        n_train_triples=len(train),
        n_test_triples=len(split.test),
    )


def _with_inverses(triples: np.ndarray, n_relations: int) -> np.ndarray:
    inverse = np.stack([triples[:, 2], triples[:, 1] + n_relations, triples[:, 0]], axis=1)
    return np.concatenate([triples, inverse])


def _rows_in(rows: np.ndarray, subset: np.ndarray) -> np.ndarray:
    """Boolean mask of ``rows`` that appear in ``subset`` (both (N, 3) int64)."""
    if len(subset) == 0:
        return np.zeros(len(rows), dtype=bool)
    view = np.dtype((np.void, rows.dtype.itemsize * 3))
    return np.isin(np.ascontiguousarray(rows).view(view).ravel(), np.ascontiguousarray(subset).view(view).ravel())
