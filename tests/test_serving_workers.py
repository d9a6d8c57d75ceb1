"""``graphrec serve --workers 2``: two server processes on one port, each binding the champion itself from the settings
the command exported, and each following an alias move on its own poll."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from graphrec.settings import Settings
from graphrec.testing import free_port, http_service, wait_until
from serving.pyfunc_model import ITEM_ID
from tests.support.serving import dot_tables, popularity_table, publish_dot_version

REPO_ROOT = Path(__file__).resolve().parent.parent
FRESH_CONNECTIONS = 40  # each on a new connection, so the OS hands them to either worker


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A world with one published dot-model champion (v1), polled every half second."""
    settings = Settings(work_dir=tmp_path / "work", serving_poll_interval_s=0.5)
    users, items = dot_tables(20, 30, 4, seed=0)
    publish_dot_version(settings, users, items, popularity_table(items[ITEM_ID].to_numpy(), seed=0))
    return settings


def served_versions(url: str) -> set[str]:
    """The versions ``GET /v1/model`` reports over fresh connections."""
    return {httpx.get(f"{url}/v1/model", timeout=10).json()["version"] for _ in range(FRESH_CONNECTIONS)}


def worker_processes(pid: int) -> list[psutil.Process]:
    """The uvicorn worker processes under the server process ``pid`` (multiprocessing spawns them)."""
    return [child for child in psutil.Process(pid).children() if "spawn_main" in " ".join(child.cmdline())]


def test_two_workers_serve_one_port_and_both_follow_a_promotion(settings: Settings) -> None:
    port = free_port()
    graphrec = str(Path(sys.executable).parent / "graphrec")
    command = [graphrec, "--work-dir", str(settings.work_dir), "serve", "--port", str(port), "--workers", "2"]
    environment = os.environ | {"GRAPHREC_SERVING_POLL_INTERVAL_S": "0.5"}
    with http_service(command + ["--log-level", "warning"], port, cwd=REPO_ROOT, env=environment) as (process, url):
        wait_until(lambda: len(worker_processes(process.pid)) == 2, 30, "two uvicorn workers")
        assert served_versions(url) == {"1"}
        users, items = dot_tables(20, 30, 4, seed=1)
        publish_dot_version(settings, users, items, popularity_table(items[ITEM_ID].to_numpy(), seed=1))
        wait_until(lambda: served_versions(url) == {"2"}, 30, "both workers serving v2")
