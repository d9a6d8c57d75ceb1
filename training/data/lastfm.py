"""Loader for the real Last.FM data: the KGCN ``lastfm-kg`` files joined with HetRec ``hetrec-lastfm-2k``.

Join rules come from the two SOURCE.md files:
- item index = line number of ``item_index2entity_id.txt`` = KG entity id; column 1 is the HetRec artistID;
- user index = rank of the raw HetRec userID among users with at least one KG-linked artist (1,872 users);
- relation index = order of first appearance of the relation name in ``kg.txt``.

Event timestamps (ratings_final.txt has none), derived deterministically: a positive (u, i) takes the earliest date
on which u tagged artist i in ``user_taggedartists.dat`` (UTC midnight); every other row takes the fixed snapshot time
2011-05-01 (the HetRec 2011 release). Weight = play count for positives, 0 for sampled negatives.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.dataset import DEFAULT_SNAPSHOT_TS, Dataset, fingerprint_files, undirected_pairs
from training.data.errors import DataNotFoundError, DatasetError, Problem
from training.data.schema import (
    HETREC_FRIENDS,
    HETREC_TAGGED,
    HETREC_TAGS,
    HETREC_USER_ARTISTS,
    LASTFM_ITEM_INDEX,
    LASTFM_KG,
    LASTFM_KG_NAMES,
    LASTFM_RATINGS,
    TableSpec,
)
from training.data.tables import read_table

LASTFM_FILES: tuple[TableSpec, ...] = (
    LASTFM_RATINGS,
    LASTFM_KG,
    LASTFM_ITEM_INDEX,
    LASTFM_KG_NAMES,
    HETREC_USER_ARTISTS,
    HETREC_FRIENDS,
    HETREC_TAGGED,
    HETREC_TAGS,
)


def missing_lastfm_files(data_dir: Path) -> list[Path]:
    """The Last.FM files absent from ``data_dir`` (empty when the real data is there)."""
    return [data_dir / spec.file for spec in LASTFM_FILES if not (data_dir / spec.file).exists()]


def load_lastfm(data_dir: Path) -> Dataset:
    """Load, validate and join the real Last.FM datasets under ``data_dir``."""
    data_dir = Path(data_dir)
    missing = missing_lastfm_files(data_dir)
    if missing:
        raise DataNotFoundError(
            f"No Last.FM data under {data_dir}: looked for {', '.join(str(p) for p in missing)}. "
            "Point GRAPHREC_DATA_DIR at the folder holding lastfm-kg/ and hetrec-lastfm-2k/, or set "
            "GRAPHREC_DATASET to a folder in graphrec's format (docs/DATA_FORMAT.md; `graphrec data synth` makes one)."
        )
    item_index = read_table(data_dir / LASTFM_ITEM_INDEX.file, LASTFM_ITEM_INDEX)
    _require_line_order(item_index, data_dir / LASTFM_ITEM_INDEX.file)
    n_items = len(item_index)
    artist_to_item = pd.Series(np.arange(n_items), index=item_index["artist_id"].to_numpy())

    listens = read_table(data_dir / HETREC_USER_ARTISTS.file, HETREC_USER_ARTISTS)
    user_raw_ids = np.sort(listens.loc[listens["artistID"].isin(artist_to_item.index), "userID"].unique())
    raw_to_user = pd.Series(np.arange(len(user_raw_ids)), index=user_raw_ids)
    n_users = len(user_raw_ids)

    names = read_table(data_dir / LASTFM_KG_NAMES.file, LASTFM_KG_NAMES)
    relation_names = list(pd.unique(names["relation_name"].astype(str)))
    n_relations = len(relation_names)

    kg = read_table(data_dir / LASTFM_KG.file, LASTFM_KG, {})
    n_entities = int(max(kg["head"].max(), kg["tail"].max(), n_items - 1)) + 1
    kg = read_table(
        data_dir / LASTFM_KG.file,
        _bounded(LASTFM_KG, {"head": "n_entities", "relation": "n_relations", "tail": "n_entities"}),
        {"n_entities": n_entities, "n_relations": n_relations},
    )
    ratings = read_table(
        data_dir / LASTFM_RATINGS.file,
        _bounded(LASTFM_RATINGS, {"user": "n_users", "item": "n_items"}),
        {"n_users": n_users, "n_items": n_items},
    )

    friends = read_table(data_dir / HETREC_FRIENDS.file, HETREC_FRIENDS)
    kept = friends["userID"].isin(raw_to_user.index) & friends["friendID"].isin(raw_to_user.index)
    social = undirected_pairs(
        raw_to_user[friends.loc[kept, "userID"]].to_numpy(), raw_to_user[friends.loc[kept, "friendID"]].to_numpy()
    )
    tags = _tags(data_dir, raw_to_user, artist_to_item)
    interactions = _interactions(ratings, tags, listens, raw_to_user, artist_to_item)

    files = [data_dir / spec.file for spec in LASTFM_FILES]
    return Dataset(
        name="lastfm",
        n_users=n_users,
        n_items=n_items,
        n_entities=n_entities,
        n_relations=n_relations,
        interactions=interactions,
        kg=kg[["head", "relation", "tail"]],
        social=social,
        tags=tags,
        relation_names=relation_names,
        domains=["music"],
        user_raw_ids=user_raw_ids,
        item_raw_ids=item_index["artist_id"].to_numpy(),
        fingerprint=fingerprint_files(files),
    )


def _bounded(spec: TableSpec, bounds: dict[str, str]) -> TableSpec:
    """The same raw spec with id columns bounded by the counts the join established."""
    columns = tuple(replace(c, bound=bounds.get(c.name, c.bound)) for c in spec.columns)
    return replace(spec, columns=columns)


def _require_line_order(item_index: pd.DataFrame, path: Path) -> None:
    """SOURCE.md: the 0-based line number is the item index and equals the entity id."""
    wrong = np.flatnonzero(item_index["entity"].to_numpy() != np.arange(len(item_index)))
    if len(wrong):
        raise DatasetError(
            [Problem(path, int(r) + 1, "entity", f"entity id must equal the line index {r}") for r in wrong]
        )


def _tags(data_dir: Path, raw_to_user: pd.Series, artist_to_item: pd.Series) -> pd.DataFrame:
    """Tag assignments of KG users on KG artists, with tag text and a UTC-midnight timestamp."""
    tagged = read_table(data_dir / HETREC_TAGGED.file, HETREC_TAGGED)
    vocabulary = read_table(data_dir / HETREC_TAGS.file, HETREC_TAGS)
    keep = tagged["userID"].isin(raw_to_user.index) & tagged["artistID"].isin(artist_to_item.index)
    tagged = tagged[keep]
    dates = pd.to_datetime(
        pd.DataFrame({"year": tagged["year"], "month": tagged["month"], "day": tagged["day"]}), errors="coerce"
    )
    text = tagged["tagID"].map(pd.Series(vocabulary["tagValue"].to_numpy(), index=vocabulary["tagID"].to_numpy()))
    frame = pd.DataFrame(
        {
            "user": raw_to_user[tagged["userID"]].to_numpy(),
            "item": artist_to_item[tagged["artistID"]].to_numpy(),
            "tag": text.fillna("").astype(str).to_numpy(),
            "timestamp": (dates.astype("int64") // 10**9).where(dates.notna(), DEFAULT_SNAPSHOT_TS).to_numpy(),
        }
    )
    return frame.reset_index(drop=True)


def _interactions(
    ratings: pd.DataFrame,
    tags: pd.DataFrame,
    listens: pd.DataFrame,
    raw_to_user: pd.Series,
    artist_to_item: pd.Series,
) -> pd.DataFrame:
    """Labelled rows of ratings_final.txt with derived timestamps and play-count weights."""
    first_tagged = tags.groupby(["user", "item"])["timestamp"].min()
    plays = listens[listens["userID"].isin(raw_to_user.index) & listens["artistID"].isin(artist_to_item.index)]
    play_count = pd.Series(
        plays["weight"].to_numpy(dtype=float),
        index=pd.MultiIndex.from_arrays(
            [raw_to_user[plays["userID"]].to_numpy(), artist_to_item[plays["artistID"]].to_numpy()]
        ),
    )
    keys = pd.MultiIndex.from_arrays([ratings["user"].to_numpy(), ratings["item"].to_numpy()])
    positive = ratings["label"].to_numpy() == 1
    timestamp = first_tagged.reindex(keys).to_numpy()
    timestamp = np.where(positive & ~np.isnan(timestamp), timestamp, DEFAULT_SNAPSHOT_TS).astype(np.int64)
    weight = np.where(positive, play_count.reindex(keys).fillna(1.0).to_numpy(), 0.0)
    return pd.DataFrame(
        {
            "user": ratings["user"].to_numpy(),
            "item": ratings["item"].to_numpy(),
            "label": ratings["label"].to_numpy(),
            "timestamp": timestamp,
            "weight": weight,
            "domain": 0,
        }
    )
