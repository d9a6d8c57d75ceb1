"""Serving latency on a synthetic world over loopback HTTP: our hot path against the naive path, on SQLite and Redis
(``bench/serving.py`` measures the real champions instead).

Builds a 64-d dot model over a few thousand items (tests/support/serving.py: MLflow registry + Feast views,
materialized with Feast), starts uvicorn in a subprocess per (store, path), warms it up, then sends ``--requests``
sequential ``POST /v1/predict`` calls (random known user, random distinct candidates) per candidate count over one
keep-alive connection, and prints p50/p99 per case and the naive/ours ratios. The naive path (``create_app(naive=
True)``) reads every (user, item) pair through Feast ``get_online_features`` into pandas and calls ``pyfunc.predict``.

Usage: ``python -m bench.serving_synthetic [--requests 2000] [--items 5000] [--stores sqlite redis]``. Latencies
include the client (httpx) and depend on machine load; the load average is printed with the table.

``--explain REV`` measures the cost of explanations instead (issue 14): a KCAN of the default width (dim 64, stars
of 16) and a BPR-MF registered through ``registry`` on a small synthetic set (tests/support/explained.py), served on
SQLite by the current code and by ``serving/`` as of git revision ``REV`` (the baseline, in the same run, servers
taking turns), for /v1/predict (100 candidates) and /v1/recommend (k 10), with ``explain`` off and on. It prints the
current/baseline ratio of the explain-off latencies and the explain-on/off ratio.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
CANDIDATES = (100, 1000)
WARMUP = 200
DIM, USERS = 64, 1000


@dataclass(frozen=True)
class Case:
    """One measured configuration and its latencies (ms)."""

    store: str
    path: str
    candidates: int
    latencies: np.ndarray

    def percentile(self, q: float) -> float:
        """The q-th percentile latency in ms."""
        return float(np.percentile(self.latencies, q))


def settings_for(work_dir: Path, store: str, redis_url: str | None):  # -> graphrec Settings (imported lazily)
    """Settings of the benchmark world for one online store."""
    from graphrec.settings import OnlineStoreKind, Settings

    extra = {"online_store": OnlineStoreKind.redis, "redis_url": redis_url} if store == "redis" else {}
    return Settings(work_dir=work_dir, serving_poll_interval_s=60.0, **extra)


def build_world(work_dir: Path, store: str, redis_url: str | None, n_items: int) -> None:
    """Publish one champion dot model and its features into ``work_dir``."""
    from tests.support.serving import dot_tables, popularity_table, publish_dot_version

    users, items = dot_tables(USERS, n_items, DIM, seed=0)
    publish_dot_version(
        settings_for(work_dir, store, redis_url), users, items, popularity_table(items["item_id"].to_numpy(), 0)
    )


def serve(work_dir: Path, store: str, redis_url: str | None, port: int, naive: bool, model_name: str | None) -> None:
    """Run the app under uvicorn (child process)."""
    import uvicorn

    from serving.app import create_app

    settings = settings_for(work_dir, store, redis_url)
    settings = settings.model_copy(update={"registered_model_name": model_name}) if model_name else settings
    app = create_app(settings, naive=naive, poll=False)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def server_command(work_dir: Path, store: str, redis_url: str | None, naive: bool, port: int) -> list[str]:
    """The command line of a server subprocess (this module, in its ``--serve`` role)."""
    command = [sys.executable, __file__, "--serve", str(work_dir), "--store", store, "--port", str(port)]
    command += ["--redis-url", redis_url] if redis_url else []
    return command + (["--naive"] if naive else [])


def measure(url: str, candidates: int, requests: int, n_items: int, seed: int) -> np.ndarray:
    """Latencies (ms) of ``requests`` sequential predict calls after a warm-up; 0 candidates: ``GET /healthz``
    (the HTTP floor: client, uvicorn and FastAPI without any work)."""
    rng = np.random.default_rng(seed)
    bodies = [
        {"user_id": int(rng.integers(USERS)), "item_ids": rng.choice(n_items, candidates, replace=False).tolist()}
        if candidates
        else None
        for _ in range(WARMUP + requests)
    ]
    return measure_calls(url, "/v1/predict", bodies)


def table(cases: list[Case]) -> str:
    """The results table with naive/ours ratios of p50 and p99."""
    lines = [
        "cands 0 = GET /healthz, the HTTP floor under the current machine load",
        f"{'store':<7}{'path':<7}{'cands':>6}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}"
        f"{'naive/ours p50':>16}{'p99':>7}",
    ]
    ours = {(c.store, c.candidates): c for c in cases if c.path == "ours"}
    for case in cases:
        ratio = ""
        base = ours.get((case.store, case.candidates))
        if case.path == "naive" and base is not None:
            ratio = (
                f"{case.percentile(50) / base.percentile(50):>15.1f}x{case.percentile(99) / base.percentile(99):>6.1f}x"
            )
        lines.append(
            f"{case.store:<7}{case.path:<7}{case.candidates:>6}{len(case.latencies):>6}{case.percentile(50):>9.2f}"
            f"{case.percentile(99):>9.2f}{case.latencies.mean():>9.2f}{ratio}"
        )
    return "\n".join(lines)


def run(stores: list[str], requests: int, naive_requests: int, n_items: int) -> list[Case]:
    """Every (store, path, candidates) case."""
    from graphrec.testing import RedisProcess, free_port, http_service

    cases: list[Case] = []
    with tempfile.TemporaryDirectory(prefix="graphrec-bench-serving-") as scratch:
        for store in stores:
            redis_server = RedisProcess(Path(scratch) / "redis") if store == "redis" else None
            if redis_server is not None:
                redis_server.start()
            try:
                redis_url = redis_server.url if redis_server is not None else None
                work_dir = Path(scratch) / store
                build_world(work_dir, store, redis_url, n_items)
                for path in ("ours", "naive"):
                    port = free_port()
                    command = server_command(work_dir, store, redis_url, path == "naive", port)
                    with http_service(command, port, cwd=REPO_ROOT) as (_, url):
                        for candidates in ((0,) if path == "ours" else ()) + CANDIDATES:
                            count = naive_requests if path == "naive" else requests
                            latencies = measure(url, candidates, count, n_items, seed=candidates)
                            cases.append(Case(store, path, candidates, latencies))
                            print(f"  {store} {path} {candidates}: p50 {np.median(latencies):.2f} ms", flush=True)
            finally:
                if redis_server is not None:
                    redis_server.stop()
    return cases


EXPLAIN_CANDIDATES, EXPLAIN_K = 100, 10


def baseline_serving(revision: str, into: Path) -> Path:
    """``serving/`` as of git ``revision``, extracted under ``into`` (a folder to put first on a server's path)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "serving"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def measure_calls(url: str, path: str, bodies: list[dict | None], variant: str | None = None) -> np.ndarray:
    """Latencies (ms) of the bodies posted to ``path`` in order (None: ``GET /healthz``), the first ``WARMUP``
    untimed; ``variant`` forces the arm with the variant header."""
    import httpx

    latencies = []
    headers = {"X-Graphrec-Variant": variant} if variant else {}
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        for index, body in enumerate(bodies):
            start = time.perf_counter()
            response = client.get("/healthz") if body is None else client.post(path, json=body)
            elapsed = time.perf_counter() - start
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
            if index >= WARMUP:
                latencies.append(elapsed * 1e3)
    return np.asarray(latencies)


def run_explain(revision: str, requests: int) -> list[Case]:
    """(server, variant, call) cases: the current and the baseline serving, explain off and (current) on; the
    servers take turns in rounds so that load drifts hit both alike."""
    from graphrec.testing import free_port, http_service
    from tests.support.explained import explained_world

    cases: dict[tuple[str, str], list[np.ndarray]] = {}
    with tempfile.TemporaryDirectory(prefix="graphrec-bench-explain-") as scratch:
        root = Path(scratch)
        world = explained_world(root / "world", {"dim": 64, "top_k": 16, "epochs": 1})
        base = baseline_serving(revision, root / "baseline")
        data = world.settings
        rng = np.random.default_rng(0)
        users = rng.integers(100, size=WARMUP + requests).tolist()
        items = [rng.choice(200, EXPLAIN_CANDIDATES, replace=False).tolist() for _ in users]
        calls = {
            "predict": ("/v1/predict", [{"user_id": u, "item_ids": i} for u, i in zip(users, items, strict=True)]),
            "recommend": ("/v1/recommend", [{"user_id": u, "k": EXPLAIN_K} for u in users]),
        }
        for _ in range(2):  # two rounds: baseline, current, baseline, current
            for server in ("baseline", "current"):
                port = free_port()
                command = server_command(data.work_dir, "sqlite", None, False, port)
                command += ["--model-name", data.registered_model_name]
                command += ["--serving-root", str(base)] if server == "baseline" else []
                with http_service(command, port, cwd=REPO_ROOT) as (_, url):
                    for variant in ("champion", "challenger"):
                        for call, (path, bodies) in calls.items():
                            modes = ("off", "on") if server == "current" else ("off",)
                            for mode in modes:
                                sent = [b | {"explain": True} for b in bodies] if mode == "on" else bodies
                                latencies = measure_calls(url, path, sent, variant)
                                key = (f"{server}/{variant}", f"{call}/explain-{mode}")
                                cases.setdefault(key, []).append(latencies)
                                print(f"  {key}: p50 {np.median(latencies):.2f} ms", flush=True)
    return [Case(server, call, EXPLAIN_CANDIDATES, np.concatenate(runs)) for (server, call), runs in cases.items()]


def explain_table(cases: list[Case]) -> str:
    """p50/p99 per case, current/baseline (explain off) and explain on/off ratios of the current server."""
    by = {(c.store, c.path): c for c in cases}
    lines = [
        f"{'server/model':<22}{'call':<22}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}  ratio (p50, mean)",
    ]
    for case in cases:
        server, model = case.store.split("/")
        call, mode = case.path.split("/")
        ratio = ""
        if server == "current":
            other = by.get(
                (f"baseline/{model}", f"{call}/explain-off")
                if mode == "explain-off"
                else (case.store, f"{call}/explain-off")
            )
            label = "current/baseline" if mode == "explain-off" else "explain on/off"
            if other is not None:
                ratio = (
                    f"{label} {case.percentile(50) / other.percentile(50):.2f}x "
                    f"{case.latencies.mean() / other.latencies.mean():.2f}x"
                )
        lines.append(
            f"{case.store:<22}{case.path:<22}{len(case.latencies):>6}{case.percentile(50):>9.2f}"
            f"{case.percentile(99):>9.2f}{case.latencies.mean():>9.2f}  {ratio}"
        )
    return "\n".join(lines)


def main() -> None:
    """Parse arguments; as parent run the benchmark and print the table, as child serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="Timed requests per case (after the warm-up).")
    parser.add_argument(
        "--naive-requests",
        type=int,
        default=None,
        help="Timed requests per naive case (default: --requests; the naive path is slow).",
    )
    parser.add_argument("--items", type=int, default=5000, help="Items in the catalogue.")
    parser.add_argument("--stores", nargs="+", default=["sqlite", "redis"], choices=["sqlite", "redis"])
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store", default="sqlite", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--naive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--explain", metavar="REV", default=None, help="Measure explain's cost against REV's serving.")
    parser.add_argument("--serving-root", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model-name", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    if args.serving_root is not None:  # the baseline's serving package shadows the checkout's
        sys.path.insert(0, str(args.serving_root))
    if args.serve is not None:
        serve(args.serve, args.store, args.redis_url, args.port, args.naive, args.model_name)
        return
    if args.explain is not None:
        load_before = os.getloadavg()
        cases = run_explain(args.explain, args.requests)
        print(explain_table(cases))
        print(
            f"machine: {os.cpu_count()} CPUs; load average (1/5/15 min) before {load_before}, after {os.getloadavg()}"
        )
        return
    load_before = os.getloadavg()
    cases = run(args.stores, args.requests, args.naive_requests or args.requests, args.items)
    print(table(cases))
    print(f"machine: {os.cpu_count()} CPUs; load average (1/5/15 min) before {load_before}, after {os.getloadavg()}")


if __name__ == "__main__":
    main()
