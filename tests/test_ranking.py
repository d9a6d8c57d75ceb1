"""The score response encoder: every float32 score reads back exactly, ranks follow the order, the envelope is whole."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

from serving.ranking import Ranked, encode
from serving.schemas import ScoresResponse


def test_encoded_scores_read_back_as_the_same_float32_values() -> None:
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(scale=10, size=500), [1e-30, -3.4e38, 0.1, 1 / 3, 0.0, -0.0]]).astype(
        np.float32
    )
    binding = SimpleNamespace(name="graphrec-kcan", version="3", alias="champion")
    result = Ranked(binding, np.arange(len(scores), dtype=np.int64) * 7, scores, np.ones(len(scores), bool), None, [])
    body = json.loads(encode(result, "abc123"))
    ScoresResponse.model_validate(body)  # the documented response model accepts it
    assert body["request_id"] == "abc123" and body["arm"] == "champion"
    assert body["model"] == {"name": "graphrec-kcan", "version": "3", "alias": "champion"}
    read = np.asarray([item["score"] for item in body["scores"]], dtype=np.float32)
    np.testing.assert_array_equal(read, scores)
    assert [item["rank"] for item in body["scores"]] == list(range(1, len(scores) + 1))
    assert [item["item_id"] for item in body["scores"]] == (np.arange(len(scores)) * 7).tolist()
