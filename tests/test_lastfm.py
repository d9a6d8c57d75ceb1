"""The real Last.FM join reproduces the counts of both SOURCE.md files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from training.data.dataset import DEFAULT_SNAPSHOT_TS, Dataset
from training.data.errors import DataNotFoundError, DatasetError
from training.data.lastfm import load_lastfm

DROPPED_RAW_USERS = {
    112,
    188,
    259,
    542,
    615,
    701,
    745,
    797,
    1013,
    1115,
    1205,
    1266,
    1307,
    1603,
    1611,
    1675,
    1731,
    1758,
    1893,
    2085,
}


@pytest.fixture(scope="module")
def lastfm(real_data_dir: Path) -> Dataset:
    """The real Last.FM join, loaded once for the module (skipped where the data is absent)."""
    return load_lastfm(real_data_dir)


def test_counts_match_source_md(lastfm) -> None:
    counts = lastfm.counts()
    assert (counts["users"], counts["items"], counts["entities"], counts["relations"]) == (1872, 3846, 9366, 60)
    assert (counts["labelled rows"], counts["positives"], counts["KG triples"]) == (42346, 21173, 15518)
    assert counts["friendships (undirected)"] == 12532
    assert counts["tag assignments"] == 44585


def test_user_index_is_rank_of_kept_raw_ids(lastfm) -> None:
    raw = lastfm.user_raw_ids
    assert np.all(np.diff(raw) > 0) and len(raw) == 1872
    assert not DROPPED_RAW_USERS & set(raw.tolist())
    assert raw[0] == 2  # the first kept HetRec user


def test_every_user_has_a_friend(lastfm) -> None:
    assert len(np.union1d(lastfm.social["user"], lastfm.social["friend"])) == 1872


def test_relation_names_in_first_appearance_order(lastfm) -> None:
    assert lastfm.relation_names[0] == "music.artist.origin"
    assert len(set(lastfm.relation_names)) == 60


def test_timestamps_are_derived_deterministically(lastfm) -> None:
    frame = lastfm.interactions
    negatives = frame[frame["label"] == 0]
    assert (negatives["timestamp"] == DEFAULT_SNAPSHOT_TS).all()
    tagged = frame[(frame["label"] == 1) & (frame["timestamp"] != DEFAULT_SNAPSHOT_TS)]
    assert len(tagged) > 2000  # positives that carry a real tag date
    first = lastfm.tags.groupby(["user", "item"])["timestamp"].min()
    sample = tagged.head(50)
    pairs = list(zip(sample["user"], sample["item"], strict=True))
    assert (first.loc[pairs].to_numpy() == sample["timestamp"].to_numpy()).all()


def test_missing_data_dir_explains_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as raised:
        load_lastfm(tmp_path)
    message = str(raised.value)
    assert "ratings_final.txt" in message and "GRAPHREC_DATA_DIR" in message


def test_corrupted_raw_file_is_reported(real_data_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    shutil.copytree(real_data_dir, copy)
    ratings = copy / "lastfm-kg" / "ratings_final.txt"
    lines = ratings.read_text().splitlines()
    lines[9] = "0\t99999\t1"
    ratings.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as raised:
        load_lastfm(copy)
    (problem,) = raised.value.problems
    assert (problem.file, problem.line, problem.column) == (ratings, 10, "item")
