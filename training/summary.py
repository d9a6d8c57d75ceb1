"""The dataset summary printed by ``graphrec data stats`` and the demo: counts, activity skew, graph sizes."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from graphrec.settings import Settings
from training.data.load import load_dataset
from training.data.splits import TERCILE_NAMES, activity_terciles, ctr_split
from training.graphs.ckg import build_ckg


class SplitRows(BaseModel, frozen=True):
    """Labelled rows in each part of the CTR split (6:2:2)."""

    seed: int
    train: int
    valid: int
    test: int


class TercileActivity(BaseModel, frozen=True):
    """Users of one activity tercile and their mean number of training positives."""

    users: int
    mean_positives: float


class UserActivity(BaseModel, frozen=True):
    """How skewed training positives per user are, overall and by tercile (sparse, medium, active)."""

    median: float
    p99: float
    max: int
    terciles: dict[str, TercileActivity]


class GraphSize(BaseModel, frozen=True):
    """Size of the collaborative knowledge graph (edges and relations count their inverses)."""

    nodes: int
    edges: int
    relations: int


class DatasetSummary(BaseModel, frozen=True):
    """The summary as data, so the CLI renders the same values as tables or as one JSON document."""

    dataset: str
    fingerprint: str
    counts: dict[str, int]
    split: SplitRows
    activity: UserActivity
    ckg: GraphSize


def dataset_summary(settings: Settings) -> DatasetSummary:
    """Counts, split sizes, training-activity skew and graph size of the configured dataset."""
    dataset = load_dataset(settings)
    split = ctr_split(dataset.interactions, settings.seed)
    positives = split.train_positives()
    per_user = np.bincount(positives["user"].to_numpy(), minlength=dataset.n_users)
    terciles = activity_terciles(positives, dataset.n_users)
    ckg = build_ckg(dataset, positives)
    members = {name: per_user[terciles == tercile] for tercile, name in enumerate(TERCILE_NAMES)}
    mean = {name: float(group.mean()) if len(group) else float("nan") for name, group in members.items()}
    return DatasetSummary(
        dataset=dataset.name,
        fingerprint=dataset.fingerprint,
        counts=dataset.counts(),
        split=SplitRows(seed=settings.seed, train=len(split.train), valid=len(split.valid), test=len(split.test)),
        activity=UserActivity(
            median=float(np.median(per_user)),
            p99=float(np.percentile(per_user, 99)),
            max=int(per_user.max(initial=0)),
            terciles={
                name: TercileActivity(users=len(group), mean_positives=mean[name]) for name, group in members.items()
            },
        ),
        ckg=GraphSize(nodes=ckg.n_nodes, edges=len(ckg.triples), relations=ckg.n_relations),
    )
