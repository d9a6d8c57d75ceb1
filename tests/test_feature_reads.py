"""The service's per-request user read (``OnlineStore.online_read``, not ``get_online_features``) keeps Feast's
semantics: a value past the view's ttl, or a missing feature, makes the row missing; an unbounded ttl never expires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from feast import Entity, FeatureView, Field, FileSource
from feast.protos.feast.types.Value_pb2 import FloatList, Value
from feast.types import Array, Float32

from serving.features import _entity_row


def view_with_ttl(ttl: timedelta) -> FeatureView:
    """A user view of one float-list feature with the given ttl (0: unbounded)."""
    return FeatureView(
        name="users",
        entities=[Entity(name="user", join_keys=["user_id"])],
        schema=[Field(name="embedding", dtype=Array(Float32))],
        source=FileSource(path="unused.parquet", timestamp_field="event_timestamp"),
        ttl=ttl,
    )


VALUES = {"embedding": Value(float_list_val=FloatList(val=[1.0, 2.0]))}


def test_a_fresh_row_is_decoded_as_one_entity_arrays() -> None:
    row = _entity_row(
        VALUES, ["embedding"], datetime.now(UTC) - timedelta(minutes=5), view_with_ttl(timedelta(hours=1))
    )
    assert row is not None
    np.testing.assert_array_equal(row["embedding"], np.array([[1.0, 2.0]], dtype=np.float32))
    assert row["embedding"].dtype == np.float32


def test_a_row_past_the_views_ttl_is_missing_and_naive_timestamps_are_utc() -> None:
    old = datetime.now(UTC) - timedelta(hours=2)
    assert _entity_row(VALUES, ["embedding"], old, view_with_ttl(timedelta(hours=1))) is None
    assert _entity_row(VALUES, ["embedding"], old.replace(tzinfo=None), view_with_ttl(timedelta(hours=1))) is None
    assert _entity_row(VALUES, ["embedding"], old, view_with_ttl(timedelta(0))) is not None  # unbounded


def test_an_absent_entity_or_feature_is_a_missing_row() -> None:
    now = datetime.now(UTC)
    assert _entity_row(None, ["embedding"], None, view_with_ttl(timedelta(0))) is None
    assert _entity_row(VALUES, ["embedding", "bias"], now, view_with_ttl(timedelta(0))) is None
    assert _entity_row({"embedding": Value()}, ["embedding"], now, view_with_ttl(timedelta(0))) is None
