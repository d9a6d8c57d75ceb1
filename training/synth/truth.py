"""Ground truth of a KG-driven synthetic set: how many held-out positives a KG path from training positives reaches.

A held-out positive (u, i) is a hit when i shares a KG entity, through one of ``relations`` (item -> entity -> item),
with some training positive of u. On a set generated with ``kg_driven_share`` s this rate grows with s; a model's
knowledge modules have that much signal to recover, and RESULTS.md can quote the rate next to each model's scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from training.data.dataset import Dataset
from training.data.splits import Split
from training.synth.catalog import PATH_RELATIONS, RELATION_NAMES

DEFAULT_PATH_RELATIONS = tuple(RELATION_NAMES[relation] for relation in PATH_RELATIONS)


def kg_path_hit_rate(dataset: Dataset, split: Split, relations: Sequence[str] = DEFAULT_PATH_RELATIONS) -> float:
    """Share of held-out (valid and test) positives that a KG path reaches from their user's training positives.

    Only users with a training positive count (for the others no path can exist, whatever the data's truth).
    ``relations`` are relation names of ``dataset``; the default is the synthetic generator's manager and merchant.
    """
    unknown = sorted(set(relations) - set(dataset.relation_names))
    if unknown:
        raise ValueError(f"relations {unknown} are not in dataset {dataset.name} ({dataset.relation_names})")
    wanted = [dataset.relation_names.index(name) for name in relations]
    kg = dataset.kg
    links = kg.loc[kg["relation"].isin(wanted) & (kg["head"] < dataset.n_items), ["head", "tail"]]
    links = links.rename(columns={"head": "item", "tail": "entity"})
    train = split.train_positives()[["user", "item"]]
    held = pd.concat([split.valid, split.test])
    held = held.loc[(held["label"] == 1) & held["user"].isin(train["user"]), ["user", "item"]]
    if held.empty:
        raise ValueError("no held-out positive belongs to a user with a training positive")
    reached = train.merge(links, on="item")[["user", "entity"]].drop_duplicates()
    held = held.reset_index(drop=True).rename_axis("row").reset_index()
    hits = held.merge(links, on="item").merge(reached, on=["user", "entity"])["row"].nunique()
    return hits / len(held)
