"""What a version publishes besides its scorer's features, built from the data the run was trained on.

* **Seen items**: each user's training interactions (the positives of the run's own split, replayed from the dataset
  with the run's seed and protocol), which /v1/recommend excludes.
* **Entity catalogue** (serving.catalogue reads it): every CKG node's kind (item, KG entity, user), raw id and display
  name (Last.FM artist names from ``hetrec-lastfm-2k/artists.dat``), the relation names of the CKG, and the KG triples
  that say which relation links a star's centre to a neighbour.

The run must have been trained on the configured dataset: its input-files fingerprint is checked, so seen items are
never taken from another dataset's split.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.entities import Run

from graphrec.settings import Settings
from serving.catalogue import ENTITY_COLUMNS, KIND_ENTITY, KIND_ITEM, KIND_USER, Catalogue, relation_names
from serving.contract import ACTIVITY_TERCILE, SEEN_FEATURE
from training.data.dataset import Dataset
from training.data.load import LASTFM, load_dataset
from training.data.splits import PROTOCOLS, activity_terciles, make_split

ARTISTS_FILE = "hetrec-lastfm-2k/artists.dat"

FINGERPRINT_TAG = "graphrec.input_files_fingerprint"


class ExplainTablesError(ValueError):
    """The run cannot be matched to the configured dataset."""


def run_dataset(settings: Settings, run: Run) -> Dataset:
    """The configured dataset, refused unless it is the one the run was trained on (same input-files fingerprint)."""
    dataset = load_dataset(settings)
    trained_on = run.data.tags.get(FINGERPRINT_TAG)
    if trained_on is not None and trained_on != dataset.fingerprint:
        raise ExplainTablesError(
            f"run {run.info.run_id} was trained on input files {trained_on}, but the configured dataset "
            f"{settings.dataset!r} has {dataset.fingerprint}: set GRAPHREC_DATASET to the run's dataset to register it"
        )
    return dataset


def seen_items(dataset: Dataset, run: Run) -> pd.DataFrame:
    """One row per user: ``seen_items`` (item ids as int64 arrays, padded with -1 to one length), the training
    positives of the run's split, and ``activity_tercile`` (0 sparse .. 2 active) by their count, as training
    defines it. The split is replayed with the run's ``seed`` and ``protocol`` params (``ctr``
    when the run logged none, the training default)."""
    params = run.data.params
    protocol = params.get("protocol", "ctr")
    if protocol not in PROTOCOLS or "seed" not in params:
        raise ExplainTablesError(
            f"run {run.info.run_id}: cannot replay its split (seed {params.get('seed')}, protocol {protocol!r})"
        )
    positives = make_split(dataset.interactions, int(params["seed"]), protocol).train_positives()  # type: ignore[arg-type]
    by_user = positives.groupby("user")["item"].unique()
    seen = [np.sort(by_user.get(u, np.empty(0, dtype=np.int64))) for u in range(dataset.n_users)]
    width = max((len(v) for v in seen), default=1) or 1  # a view's arrays share one length: -1 pads
    return pd.DataFrame(
        {
            "user_id": np.arange(dataset.n_users, dtype=np.int64),
            SEEN_FEATURE: [np.pad(v.astype(np.int64), (0, width - len(v)), constant_values=-1) for v in seen],
            ACTIVITY_TERCILE: activity_terciles(positives, dataset.n_users).astype(np.int64),
        }
    )


def artist_names(data_dir: Path) -> dict[int, str]:
    """Last.FM artist id -> name, from HetRec's ``artists.dat`` (empty when the file is absent)."""
    path = data_dir / ARTISTS_FILE
    if not path.exists():
        return {}
    frame = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, usecols=["id", "name"], encoding="utf-8")
    return dict(zip(frame["id"].astype(int), frame["name"].astype(str), strict=True))


def build_catalogue(settings: Settings, dataset: Dataset) -> Catalogue:
    """Every CKG node (items 0..n_items-1, KG entities up to n_entities-1, users from n_entities) with its kind, raw
    id and display name, the CKG's relation names, and the KG triples."""
    names = artist_names(settings.data_dir) if settings.dataset == LASTFM else {}
    item_raw = dataset.item_raw_ids if dataset.item_raw_ids is not None else np.arange(dataset.n_items)
    user_raw = dataset.user_raw_ids if dataset.user_raw_ids is not None else np.arange(dataset.n_users)
    n_other = dataset.n_entities - dataset.n_items
    entities = pd.DataFrame(
        {
            "node_id": np.arange(dataset.n_entities + dataset.n_users, dtype=np.int64),
            "kind": [KIND_ITEM] * dataset.n_items + [KIND_ENTITY] * n_other + [KIND_USER] * dataset.n_users,
            "raw_id": [str(r) for r in item_raw]
            + [str(e) for e in range(dataset.n_items, dataset.n_entities)]
            + [str(u) for u in user_raw],
            "name": [names.get(int(r)) for r in item_raw] + [None] * (n_other + dataset.n_users),
        }
    )[list(ENTITY_COLUMNS)]
    triples = dataset.kg[["head", "relation", "tail"]].astype(np.int64).reset_index(drop=True)
    return Catalogue.from_frames(entities, relation_names(dataset.relation_names, dataset.n_relations), triples)
