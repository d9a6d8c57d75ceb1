"""Shared fixtures: a tiny valid dataset folder, settings pointing at temporary work dirs, the real data location."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphrec.settings import Settings
from training.data.dataset import Dataset, write_dataset

REAL_DATA = Settings().data_dir


def tiny_dataset() -> Dataset:
    """6 users, 5 items (entities 0-4) plus 3 attribute entities, 2 relations: small enough to reason about."""
    interactions = pd.DataFrame(
        {
            "user": [0, 0, 1, 1, 2, 2, 3, 4, 5, 5],
            "item": [0, 1, 1, 2, 2, 3, 4, 0, 3, 4],
            "label": [1, 0, 1, 1, 1, 0, 1, 1, 1, 0],
            "timestamp": np.arange(10, dtype=np.int64) + 1_700_000_000,
        }
    )
    kg = pd.DataFrame({"head": [0, 1, 2, 3, 4, 0], "relation": [0, 0, 0, 1, 1, 1], "tail": [5, 5, 6, 7, 7, 6]})
    social = pd.DataFrame({"user": [0, 1, 2, 3], "friend": [1, 2, 3, 5]})
    tags = pd.DataFrame({"user": [0, 1], "item": [0, 1], "tag": ["rock", "jazz"], "timestamp": [1, 2]})
    return Dataset(
        name="tiny",
        n_users=6,
        n_items=5,
        n_entities=8,
        n_relations=2,
        interactions=interactions,
        kg=kg,
        social=social,
        tags=tags,
        relation_names=["genre", "label"],
    )


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    """A valid dataset folder in graphrec's format."""
    folder = tmp_path / "tiny"
    write_dataset(tiny_dataset(), folder)
    return folder


@pytest.fixture
def real_data_dir() -> Path:
    """The shared real Last.FM data; tests using it are skipped where it is absent."""
    if not (REAL_DATA / "lastfm-kg" / "ratings_final.txt").exists():
        pytest.skip(f"real Last.FM data not found under {REAL_DATA}")
    return REAL_DATA


@pytest.fixture
def settings_for(tmp_path: Path):
    """Build Settings whose work dir is a fresh temporary folder."""

    def make(**overrides: object) -> Settings:
        return Settings(work_dir=tmp_path / "work", **overrides)

    return make
