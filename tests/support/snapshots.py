"""Random but valid offline snapshots of every feature view, at two fixed event times."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from feature_repo.catalog import CREATED_TIMESTAMP, EVENT_TIMESTAMP, VIEWS, ValueType, ViewSpec
from featurestore.offline import write_snapshot
from graphrec.settings import Settings

T1 = datetime(2011, 5, 1, tzinfo=UTC)
T2 = datetime(2011, 6, 1, 12, 30, 15, 250000, tzinfo=UTC)
CREATED_1 = datetime(2026, 1, 1, tzinfo=UTC)
CREATED_2 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
DIM = 4


def random_frame(
    spec: ViewSpec, ids: np.ndarray, event: datetime, created: datetime, rng: np.random.Generator
) -> pd.DataFrame:
    """A valid snapshot frame: random ints (some negative or large), float32 with a few NaN, DIM-d float32 arrays."""
    frame = pd.DataFrame({spec.entity.join_key: ids.astype(np.int64)})
    frame[EVENT_TIMESTAMP] = pd.Timestamp(event)
    frame[CREATED_TIMESTAMP] = pd.Timestamp(created)
    for feature in spec.features:
        if feature.dtype is ValueType.int64:
            frame[feature.name] = rng.integers(-5, 5_000_000_000, len(ids))
        elif feature.dtype is ValueType.float32:
            values = rng.random(len(ids), dtype=np.float32)
            values[::7] = np.nan
            frame[feature.name] = values
        else:
            frame[feature.name] = list(rng.standard_normal((len(ids), DIM), dtype=np.float32))
    return frame


def write_two_snapshots(settings: Settings, n: int, seed: int = 0) -> None:
    """Every view: a snapshot of entities 0..n-1 at T1, then one of the even entities at T2."""
    rng = np.random.default_rng(seed)
    for spec in VIEWS:
        write_snapshot(settings.offline_dir, spec, random_frame(spec, np.arange(n), T1, CREATED_1, rng))
        write_snapshot(settings.offline_dir, spec, random_frame(spec, np.arange(0, n, 2), T2, CREATED_2, rng))
