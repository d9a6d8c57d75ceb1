"""Harness of the reliability tier: the app under uvicorn in a subprocess, and a load generator in another.

``python -m tests.system.harness serve WORK_DIR PORT [--redis-url URL] [--poll S]`` runs the app (on Redis when a
URL is given); ``python -m tests.system.harness load URL SECONDS CONCURRENCY OUT.json`` sends predict requests from
``CONCURRENCY`` threads (keep-alive clients) for ``SECONDS`` and writes, per request, its start time, latency,
status, served version and whether a 503 carried Retry-After.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from graphrec.settings import OnlineStoreKind, Settings
from graphrec.testing import free_port, http_service

REPO_ROOT = Path(__file__).resolve().parents[2]
USERS, ITEMS, DIM, CANDIDATES = 500, 2000, 64, 100


def system_settings(work_dir: Path, redis_url: str | None = None, poll_s: float = 1.0) -> Settings:
    """Settings of a system-test world."""
    extra = {"online_store": OnlineStoreKind.redis, "redis_url": redis_url} if redis_url else {}
    return Settings(work_dir=work_dir, serving_poll_interval_s=poll_s, **extra)


@dataclass
class Server:
    """A running app subprocess."""

    process: subprocess.Popen
    url: str


@contextmanager
def running_server(work_dir: Path, redis_url: str | None = None, poll_s: float = 1.0) -> Iterator[Server]:
    """Start the app on a free port, wait for /readyz, stop it afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "tests.system.harness", "serve", str(work_dir), str(port), "--poll", str(poll_s)]
    command += ["--redis-url", redis_url] if redis_url else []
    with http_service(command, port, cwd=REPO_ROOT) as (process, url):
        yield Server(process, url)


@contextmanager
def load(url: str, seconds: float, concurrency: int, out: Path) -> Iterator[subprocess.Popen]:
    """Run the load generator in a second process; on exit wait for it to finish."""
    command = [sys.executable, "-m", "tests.system.harness", "load", url, str(seconds), str(concurrency), str(out)]
    process = subprocess.Popen(command, cwd=REPO_ROOT)
    try:
        yield process
    finally:
        process.wait(timeout=seconds + 120)


def read_records(out: Path) -> list[dict[str, object]]:
    """The load generator's records."""
    return json.loads(out.read_text())


def summary(records: list[dict[str, object]]) -> dict[str, object]:
    """Counts by status, transport errors and latency percentiles (ms) of the 200s."""
    statuses: dict[str, int] = {}
    for record in records:
        statuses[str(record["status"])] = statuses.get(str(record["status"]), 0) + 1
    ok = np.asarray([r["ms"] for r in records if r["status"] == 200])
    return {
        "requests": len(records),
        "statuses": statuses,
        "p50_ms": float(np.percentile(ok, 50)) if len(ok) else None,
        "p99_ms": float(np.percentile(ok, 99)) if len(ok) else None,
        "throughput_rps": len(records) / max(1e-9, max(r["t"] for r in records) - min(r["t"] for r in records)),
    }


def _worker(url: str, stop_at: float, seed: int, records: list[dict[str, object]]) -> None:
    rng = np.random.default_rng(seed)
    with httpx.Client(base_url=url, timeout=10) as client:
        while time.time() < stop_at:
            user_id = int(rng.integers(USERS))
            body = {"user_id": user_id, "item_ids": rng.choice(ITEMS, CANDIDATES, replace=False).tolist()}
            start = time.time()
            record: dict[str, object] = {"t": start}
            try:
                response = client.post("/v1/predict", json=body)
                record["status"] = response.status_code
                if response.status_code == 200:
                    record["version"] = response.json()["model"]["version"]
                record["retry_after"] = "retry-after" in response.headers
            except httpx.TransportError as error:
                record["status"] = f"transport:{type(error).__name__}"
            record["ms"] = (time.time() - start) * 1e3
            records.append(record)


def generate_load(url: str, seconds: float, concurrency: int, out: Path) -> None:
    """Send requests from ``concurrency`` threads for ``seconds``; write the records to ``out``."""
    records: list[dict[str, object]] = []
    stop_at = time.time() + seconds
    threads = [threading.Thread(target=_worker, args=(url, stop_at, seed, records)) for seed in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.write_text(json.dumps(records))


def serve(work_dir: Path, port: int, redis_url: str | None, poll_s: float) -> None:
    """Run the app under uvicorn."""
    import uvicorn

    from serving.app import create_app

    app = create_app(system_settings(work_dir, redis_url, poll_s))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def main() -> None:
    """Entry point of the two subprocess roles."""
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    serve_args = commands.add_parser("serve")
    serve_args.add_argument("work_dir", type=Path)
    serve_args.add_argument("port", type=int)
    serve_args.add_argument("--redis-url")
    serve_args.add_argument("--poll", type=float, default=1.0)
    load_args = commands.add_parser("load")
    load_args.add_argument("url")
    load_args.add_argument("seconds", type=float)
    load_args.add_argument("concurrency", type=int)
    load_args.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.work_dir, args.port, args.redis_url, args.poll)
    else:
        generate_load(args.url, args.seconds, args.concurrency, args.out)


if __name__ == "__main__":
    main()
