"""CD-GNN as a platform model (issue 13, item 5): fitted for one target domain on the platform's CTR split, so its
registered version is compared, served and audited exactly like a single-domain model's.

The platform's promotion gate scores the test rows of the seeded CTR split (registry/evaluation.py), and registration
replays that split to publish each user's seen items (registry/explain_tables.py). Fitting on the same split keeps both
true for CD-GNN with no second split to replay: the gate's rows of the target domain are held out from its training,
and the published seen items are the rows it trained on. The cold-start sweeps of ``graphrec crossdomain evaluate``
(target rows held out per user, a kept share) stay a research protocol beside it.

Selection is on validation AUC of the target domain's labelled rows (positives and the dataset's negatives), the
metric the gate compares; metrics carry the platform's names (``auc``, ``f1`` overall and per activity tercile,
``recall@20`` / ``ndcg@20`` over the domain's catalogue), so the run, its model card and ``graphrec models list``
read like every model's.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from training.crossdomain.evaluate import full_catalogue
from training.crossdomain.model import CrossDomainModel, variant_config
from training.crossdomain.task import CrossDomainTask, build_task
from training.data.dataset import Dataset
from training.data.splits import Split, activity_terciles
from training.evaluation.metrics import ctr_metrics


@dataclass(frozen=True)
class DomainFit:
    """A model fitted for one target domain, restored to its best validation epoch, with its metrics."""

    model: CrossDomainModel
    target: int
    history: list[dict[str, float]]  # per epoch: epoch, train_loss, valid_auc, valid_f1, seconds
    valid: dict[str, float]
    test: dict[str, float]
    best_epoch: int
    seconds_per_epoch: float


def domain_index(dataset: Dataset, domain: str) -> int:
    """The index of the domain named ``domain`` (or given as its index) in a two-domain dataset."""
    names = [str(name) for name in dataset.domains[:2]]
    if domain in names:
        return names.index(domain)
    if domain in ("0", "1") and len(names) < 2:
        return int(domain)
    raise ValueError(f"{dataset.name}: no domain {domain!r}; its domains are {', '.join(names) or '0, 1 (unnamed)'}")


def domain_logits(model: CrossDomainModel, task: CrossDomainTask, domain: int, rows: pd.DataFrame) -> np.ndarray:
    """The model's logits of labelled rows (dataset user and item ids) of ``domain``."""
    users, items = model.user_item_matrices(domain)
    local = np.searchsorted(task.items[domain], rows["item"].to_numpy())
    user_index = torch.as_tensor(rows["user"].to_numpy())
    return (users[user_index] * items[torch.as_tensor(local)]).sum(1).numpy()


def _metrics(
    model: CrossDomainModel, task: CrossDomainTask, domain: int, rows: pd.DataFrame, terciles: np.ndarray
) -> dict[str, float]:
    logits = domain_logits(model, task, domain, rows)
    return ctr_metrics(rows["label"].to_numpy(), logits, terciles[rows["user"].to_numpy()])


def _top_k(model: CrossDomainModel, task: CrossDomainTask, domain: int, positives: np.ndarray) -> dict[str, float]:
    """Recall/NDCG@20 of held-out positives (local ids) over the domain's catalogue, in the platform's metric names."""
    if not len(positives):
        return {}
    users, items = model.user_item_matrices(domain)
    return {name.lower(): value for name, value in full_catalogue(task, domain, users, items, positives).items()}


def _in_domain(rows: pd.DataFrame, domain: int) -> pd.DataFrame:
    return rows[rows["domain"] == domain].reset_index(drop=True)


def fit_domain(
    dataset: Dataset, split: Split, target: int, variant: str = "cdgnn", epochs: int = 5, **overrides: object
) -> DomainFit:
    """Fit ``variant`` for ``epochs`` epochs on ``split``'s training positives of both domains, keep the epoch of best
    validation AUC on ``target``'s labelled rows, and evaluate validation and test there (module docstring)."""
    task = build_task(dataset, split, (target,))
    valid_rows, test_rows = _in_domain(split.valid, target), _in_domain(split.test, target)
    if valid_rows.empty or test_rows.empty:
        raise ValueError(f"{dataset.name}: the split holds no validation or test rows in domain {target}")
    terciles = activity_terciles(split.train_positives(), dataset.n_users)
    model = CrossDomainModel(task, variant_config(variant, **overrides))
    optimizer = model.optimizer()
    history: list[dict[str, float]] = []
    best_auc, best_epoch, best_state = -np.inf, epochs, None
    for epoch in range(1, epochs + 1):
        tick = time.perf_counter()
        loss = model.train_epoch(optimizer, pretraining=epoch <= model.config.pretrain_epochs)
        model.fit_mappings()
        seconds = time.perf_counter() - tick
        valid = _metrics(model, task, target, valid_rows, terciles)
        history.append(
            {"epoch": epoch, "train_loss": loss, "valid_auc": valid["auc"], "valid_f1": valid["f1"], "seconds": seconds}
        )
        if valid["auc"] > best_auc:  # a NaN AUC (one label) never wins
            best_auc, best_epoch, best_state = valid["auc"], epoch, copy.deepcopy(model.state_dict())
    if best_state is not None:  # else no epoch had a finite validation AUC: the last one stands
        model.load_state_dict(best_state)
    return DomainFit(
        model=model,
        target=target,
        history=history,
        valid=_metrics(model, task, target, valid_rows, terciles) | _top_k(model, task, target, task.valid[target]),
        test=_metrics(model, task, target, test_rows, terciles) | _top_k(model, task, target, task.test[target]),
        best_epoch=best_epoch,
        seconds_per_epoch=float(np.mean([record["seconds"] for record in history])),
    )
