"""Splits are seeded, disjoint and complete; terciles are equal-sized and ordered by activity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.data.splits import activity_terciles, ctr_split, topk_split


def _interactions(n_users: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        items = rng.choice(200, size=1 + user % 15, replace=False)
        rows += [(user, int(i), int(rng.integers(0, 2))) for i in items]
    return pd.DataFrame(rows, columns=["user", "item", "label"])


def test_ctr_split_is_6_2_2_disjoint_and_seeded() -> None:
    frame = _interactions()
    split = ctr_split(frame, seed=7)
    sizes = np.array([len(split.train), len(split.valid), len(split.test)])
    assert sizes.sum() == len(frame)
    assert np.allclose(sizes / len(frame), [0.6, 0.2, 0.2], atol=0.01)
    keys = [set(zip(part["user"], part["item"], strict=True)) for part in (split.train, split.valid, split.test)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    again = ctr_split(frame, seed=7)
    pd.testing.assert_frame_equal(split.test, again.test)
    assert not split.test.equals(ctr_split(frame, seed=8).test)


def test_ctr_split_rejects_bad_ratios() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        ctr_split(_interactions(), seed=0, ratios=(0.5, 0.2, 0.2))


def test_topk_split_keeps_a_training_positive_per_user() -> None:
    frame = _interactions()
    split = topk_split(frame, seed=3)
    positives = frame[frame["label"] == 1]
    assert len(split.train) + len(split.valid) + len(split.test) == len(positives)
    assert set(split.train["user"]) == set(positives["user"])
    assert len(split.test) > 0 and len(split.valid) > 0
    held_out = set(zip(split.test["user"], split.test["item"], strict=True))
    assert not held_out & set(zip(split.train["user"], split.train["item"], strict=True))


def test_terciles_are_equal_sized_and_ordered() -> None:
    counts = np.array([5, 1, 9, 3, 3, 0, 7, 2, 8])
    positives = pd.DataFrame({"user": np.repeat(np.arange(9), counts)})
    terciles = activity_terciles(positives, 9)
    assert np.bincount(terciles).tolist() == [3, 3, 3]
    assert counts[terciles == 0].max() <= counts[terciles == 1].min()
    assert counts[terciles == 1].max() <= counts[terciles == 2].min()
    assert terciles[5] == 0 and terciles[2] == 2
