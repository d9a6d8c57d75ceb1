"""``graphrec monitor prune``: the request log's retention deletes old requests with all their feedback, one
transaction, and leaves everything newer untouched; a dry run deletes nothing; bad input names the option."""

from __future__ import annotations

import json
import time
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app as cli
from graphrec.settings import Settings
from serving.requestlog import SqlSink

runner = CliRunner()
DAY = 86_400.0


def request(request_id: str, served_at: float) -> dict[str, object]:
    """One served_requests row, as the writer stores it."""
    return {
        "request_id": request_id,
        "served_at": served_at,
        "route": "predict",
        "user_id": 7,
        "arm": "champion",
        "assignment": "split",
        "model_name": "graphrec-kcan",
        "model_version": "1",
        "item_ids": [3, 1],
        "scores": [0.5, 0.25],
        "fallback": None,
        "feature_watermark": None,
        "user_view": "u",
        "item_view": "i",
        "features": None,
    }


def click(request_id: str, item: int, received_at: float) -> dict[str, object]:
    """One feedback row."""
    return {"request_id": request_id, "item_id": item, "event": "click", "received_at": received_at}


def prune(settings: Settings, *args: str) -> tuple[int, str]:
    result = runner.invoke(cli, ["--work-dir", str(settings.work_dir), "monitor", "prune", *args])
    return result.exit_code, result.output


def test_prune_deletes_old_requests_with_their_feedback_and_keeps_the_rest(tmp_path: Path) -> None:
    settings = Settings(work_dir=tmp_path / "work")
    now = time.time()
    sink = SqlSink(settings.request_log_uri)
    sink.write(
        [request("old-1", now - 40 * DAY), request("old-2", now - 31 * DAY), request("new", now - DAY)],
        # old-2's click arrived after the cut-off: it still goes with its request
        [click("old-1", 3, now - 40 * DAY), click("old-2", 1, now - 2 * DAY), click("new", 3, now - DAY)],
    )

    code, output = prune(settings, "--older-than", "30d", "--dry-run", "--json")
    assert code == 0, output
    assert json.loads(output) | {"before": None} == {
        "before": None,
        "dry_run": True,
        "requests": 2,
        "feedback_events": 2,
    }
    assert len(sink.requests()) == 3 and len(sink.feedback()) == 3

    code, output = prune(settings, "--older-than", "30d")
    assert code == 0, output
    assert "deleted 2 requests and their 2 feedback events" in output and "cut-off: served before" in output
    assert sink.requests()["request_id"].tolist() == ["new"]
    assert sink.feedback()["request_id"].tolist() == ["new"]
    assert sink.find("new") is not None and sink.find("old-1") is None

    code, output = prune(settings, "--older-than", "30d", "--json")
    assert code == 0 and json.loads(output)["requests"] == 0


def test_prune_refuses_a_bad_moment_and_a_missing_log(tmp_path: Path) -> None:
    settings = Settings(work_dir=tmp_path / "work")
    code, output = prune(settings, "--older-than", "last month")
    assert code == 2 and "--older-than 'last month'" in output
    code, output = prune(settings, "--older-than", "30d")
    assert code == 1 and "no such file" in output and "requests.db" in output
    assert not (settings.work_dir / "requests.db").exists()  # the check created nothing
