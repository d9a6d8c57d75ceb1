"""``graphrec monitor skew``: served features vs Feast's offline point-in-time values, right after a materialize (no
mismatch), after a view was rebuilt offline but not materialized (flagged, exit 1), and with offline rows tied on
both stamps (ambiguous, flagged)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cli.main import app as cli
from feature_repo.catalog import CREATED_TIMESTAMP, EVENT_TIMESTAMP
from graphrec.settings import Settings
from serving.app import create_app
from serving.pyfunc_model import ITEM_ID
from tests.support.serving import dot_tables, popularity_table, publish_dot_version

runner = CliRunner()
N_USERS, N_ITEMS = 20, 30


def skew(settings: Settings, *args: str) -> tuple[int, dict]:
    result = runner.invoke(
        cli, ["--work-dir", str(settings.work_dir), "monitor", "skew", "--json", *args], env={"COLUMNS": "80"}
    )
    return result.exit_code, json.loads(result.stdout)


def serve(settings: Settings, requests: int) -> None:
    with TestClient(create_app(settings, poll=False)) as client:
        for index in range(requests):
            answer = client.post("/v1/predict", json={"user_id": index % N_USERS, "item_ids": [1, 2, 3, 4, 5, 6]})
            assert answer.status_code == 200
        assert client.app.state.request_log.flush(30)


def test_skew_is_zero_after_materialize_and_flags_an_unmaterialized_rebuild(tmp_path: Path) -> None:
    settings = Settings(work_dir=tmp_path / "work", serving_request_log_feature_share=1.0)
    users, items = dot_tables(N_USERS, N_ITEMS, 4, seed=0)
    published = publish_dot_version(settings, users, items, popularity_table(items[ITEM_ID].to_numpy(), seed=0))
    serve(settings, 2 * N_USERS)

    code, fresh = skew(settings, "--max-psi", "100")
    assert code == 0 and fresh["passed"] and fresh["requests"] == 2 * N_USERS
    by_feature = {(f["view"], f["feature"]): f for f in fresh["features"]}
    user_view, item_view = f"graphrec_kcan_v{published.version}_user", f"graphrec_kcan_v{published.version}_item"
    assert set(by_feature) == {(user_view, "embedding"), (item_view, "embedding"), (item_view, "bias")}
    assert all(f["mismatches"] == 0 and f["max_abs_diff"] == 0.0 for f in fresh["features"])
    assert by_feature[(user_view, "embedding")]["psi"] is not None  # 40 served rows of 20 users

    # The rebuilt snapshot must be strictly newer than the published one in (event, created) time, as a feature
    # build's is (created = its wall-clock time, to the microsecond). The published snapshot's stamps are the second
    # before its publication, so within the same second an equal stamp would tie, and Feast's point-in-time join then
    # picks either row (the cause of this test's old intermittent 0% result).
    published_stamps = pd.read_parquet(settings.offline_dir / user_view)[[EVENT_TIMESTAMP, CREATED_TIMESTAMP]].max()
    rebuilt_at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    event, created = pd.Timestamp(rebuilt_at), pd.Timestamp(datetime.now(UTC))
    assert (event, created) > (published_stamps[EVENT_TIMESTAMP], published_stamps[CREATED_TIMESTAMP])
    moved = users.assign(embedding=[e + 1.0 for e in users["embedding"]])
    moved.assign(**{EVENT_TIMESTAMP: event, CREATED_TIMESTAMP: created}).to_parquet(
        settings.offline_dir / user_view / f"{rebuilt_at:%Y%m%dT%H%M%S%f}-rebuilt.parquet", index=False
    )
    since = time.time()
    time.sleep(1.0)  # served strictly after the rebuilt snapshot's timestamp
    serve(settings, N_USERS)

    code, stale = skew(settings, "--since", datetime.fromtimestamp(since, UTC).isoformat(), "--max-psi", "100")
    assert code == 1 and not stale["passed"]
    flagged = {(f["view"], f["feature"]): f for f in stale["features"]}
    assert flagged[(user_view, "embedding")]["mismatch_rate"] == 1.0
    assert np.isclose(flagged[(user_view, "embedding")]["max_abs_diff"], 1.0)
    assert flagged[(item_view, "embedding")]["mismatches"] == 0
    assert stale["failures"] == [f"{user_view}:embedding mismatch rate 100.0% > 0.0%"]
    since_text = datetime.fromtimestamp(since, UTC).isoformat()
    text = runner.invoke(
        cli, ["--work-dir", str(settings.work_dir), "monitor", "skew", "--since", since_text], env={"COLUMNS": "80"}
    )
    assert text.exit_code == 1, text.stdout
    assert f"skew: {user_view}:embedding mismatch rate 100.0% > 0.0%" in text.stdout, text.stdout

    # a window spanning the rebuild (40 requests before it, 20 after) must flag the 20
    code, spanning = skew(settings, "--since", "5m", "--max-psi", "100")
    rates = {(f["view"], f["feature"]): f["mismatch_rate"] for f in spanning["features"]}
    assert code == 1 and rates[(user_view, "embedding")] >= 20 / 60

    # a second snapshot tied with the rebuilt one on both stamps makes the point-in-time value ambiguous: flagged
    tied_copy = users.assign(embedding=[e + 2.0 for e in users["embedding"]])
    tied_copy = tied_copy.assign(**{EVENT_TIMESTAMP: event, CREATED_TIMESTAMP: created})
    tied_copy.to_parquet(settings.offline_dir / user_view / "tied.parquet", index=False)
    code, tied = skew(settings, "--since", since_text, "--max-psi", "100")
    assert code == 1
    assert f"{user_view}: {N_USERS} entities have offline rows tied on event and created time" in tied["failures"][0]
