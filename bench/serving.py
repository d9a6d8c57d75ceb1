"""Benchmark what is served: the promoted champion of each model family, over loopback HTTP, on the real state.

Reads a work dir that ``make demo`` built (Last.FM features in Feast, KCAN registered and promoted as
``graphrec-kcan@champion``). A baseline family (``--families``, default BPR-MF) is served from its own registered
model, ``graphrec-<family>``; when it has no champion yet, the benchmark trains it with its tuned config, registers it
(publishing its features) and promotes it, and says so. Then, in one run:

- the HTTP floor: ``GET /healthz`` on the KCAN server (client, uvicorn and FastAPI, no work);
- per family, sequential ``POST /v1/predict`` at 100 and 1,000 candidates (random known users, random distinct items
  of the whole catalogue, one keep-alive connection, stdlib ``http.client`` to keep the client's own cost low);
- the naive path (``create_app(naive=True)``: every pair read through Feast ``get_online_features`` into pandas, the
  pyfunc's ``predict``) of each family, fewer requests;
- KCAN under concurrency: 4 and 16 clients (threads, one connection each) against 1 and 2 uvicorn workers;
  sequential with 2 torch threads in the one worker (the default is 1), and with the request log off (on by
  default: issue 15's background writer shares the process);
- an in-process profile of the same requests through the service's stages: request parse, user features (one
  online read), item lookup (ids to cached rows), score (gather + head), ranking, encoding; the rest of the HTTP
  median is uvicorn, FastAPI and the client.

Prints p50/p99/p999 per case, ratios to the naive path and to the HTTP floor, the stage table, the machine's load
average before and after. The client runs on the same 2 cores as the server. ``--request-log`` measures only the
request log's cost (issue 15): KCAN with the log on and off, sequential and 16 clients, in the same run, with the
on/off ratios. Usage: ``python -m bench.serving [--work-dir work] [--families bpr_mf] [--requests 2000]
[--naive-requests 200] [--request-log]``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
CANDIDATES = (100, 1000)
WARMUP = 200
CLIENTS = (4, 16)
WORKERS = (1, 2)
KCAN = "kcan"
STAGES = ("parse", "user features", "item lookup", "score", "ranking", "encoding")


@dataclass(frozen=True)
class Case:
    """One measured configuration and its latencies (ms)."""

    family: str
    path: str  # "ours", "naive", "floor"
    candidates: int
    setup: str  # "sequential", "4 clients / 1 worker", ...
    latencies: np.ndarray
    rate: float | None = None  # requests per second of a concurrent run (sequential: 1,000 / mean ms)

    def percentile(self, q: float) -> float:
        """The q-th percentile latency in ms."""
        return float(np.percentile(self.latencies, q))

    @property
    def throughput(self) -> float:
        """Requests per second: measured under concurrency, else one over the mean latency."""
        return self.rate if self.rate is not None else 1e3 / float(self.latencies.mean())


def registered_name(family: str, kcan_name: str) -> str:
    """The registered model a family is served from: the demo's KCAN name, ``graphrec-<family>`` for the others."""
    return kcan_name if family == KCAN else f"graphrec-{family}"


def ensure_champion(work_dir: Path, family: str) -> str:
    """The family's registered model name, after training, registering and promoting a version if it has no
    champion (a baseline's first run); raises when the KCAN champion is missing (``make demo`` makes it)."""
    from graphrec.settings import Settings
    from registry.promotion import promote
    from registry.tracking import configure_mlflow
    from registry.train import train_and_log
    from serving.binding import ModelSource
    from serving.contract import CHAMPION
    from training.models.base import load_models

    settings = Settings(work_dir=work_dir)
    name = registered_name(family, settings.registered_model_name)
    if ModelSource(settings.mlflow_uri).alias_version(name, CHAMPION) is not None:
        return name
    if family == KCAN:
        raise SystemExit(f"{name}@champion is missing under {work_dir}: run `make demo` (or graphrec demo) first")
    print(f"{name} has no champion: training {family} (tuned config), registering and promoting it", flush=True)
    family_settings = settings.model_copy(update={"registered_model_name": name})
    configure_mlflow(family_settings)
    load_models()
    outcome = train_and_log(family_settings, family, None, register_version=True)
    assert outcome.version is not None
    promote(family_settings, name, str(outcome.version.version), force=True, reason="bench/serving.py baseline")
    return name


def server_command(port: int, workers: int, naive: bool) -> list[str]:
    """uvicorn serving the app factory of this environment's settings (naive: this module's naive factory)."""
    factory = "bench.serving:naive_app" if naive else "serving.workers:app_from_environment"
    return [
        sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip


def naive_app():  # -> FastAPI (imported lazily)
    """The app with the naive scoring path, for the settings in the environment (uvicorn ``--factory`` target)."""
    from graphrec.settings import Settings
    from serving.app import create_app

    return create_app(Settings(), naive=True)


def request_bodies(user_ids: np.ndarray, item_ids: np.ndarray, candidates: int, count: int, seed: int) -> list[bytes]:
    """``count`` predict bodies: a random known user, ``candidates`` random distinct items of the catalogue."""
    rng = np.random.default_rng(seed)
    return [
        json.dumps(
            {"user_id": int(rng.choice(user_ids)), "item_ids": rng.choice(item_ids, candidates, replace=False).tolist()}
        ).encode()
        for _ in range(count)
    ]


def timed_calls(port: int, bodies: list[bytes | None], results: list[float] | None = None) -> list[float]:
    """Latencies (ms) of the bodies sent in order over one keep-alive connection (None: ``GET /healthz``)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies = [] if results is None else results
    headers = {"Content-Type": "application/json"}
    try:
        for body in bodies:
            start = time.perf_counter()
            if body is None:
                connection.request("GET", "/healthz")
            else:
                connection.request("POST", "/v1/predict", body, headers)
            response = connection.getresponse()
            payload = response.read()
            latencies.append((time.perf_counter() - start) * 1e3)
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
    finally:
        connection.close()
    return latencies


def sequential(port: int, bodies: list[bytes | None]) -> np.ndarray:
    """Latencies after the warm-up (the first ``WARMUP`` bodies)."""
    return np.asarray(timed_calls(port, bodies)[WARMUP:])


def concurrent(port: int, bodies: list[bytes], clients: int) -> tuple[np.ndarray, float]:
    """Latencies of ``bodies`` (after a warm-up) sent by ``clients`` threads, each its share over one connection, and
    the requests per second of the whole run."""
    timed_calls(port, bodies[:WARMUP])
    shares: list[list[float]] = [[] for _ in range(clients)]
    failures: list[BaseException] = []

    def client(index: int) -> None:
        try:
            timed_calls(port, bodies[WARMUP + index :: clients], shares[index])
        except Exception as error:  # noqa: BLE001  re-raised in the caller's thread below
            failures.append(error)

    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise failures[0]
    latencies = np.concatenate([np.asarray(share) for share in shares])
    return latencies, len(latencies) / elapsed


def catalogue(work_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(user ids, item ids) of the family's champion: the entities its user and item views hold."""
    from featurestore.config import feature_store
    from graphrec.settings import Settings
    from serving.binding import ModelSource
    from serving.contract import CHAMPION, ITEM_VIEW_TAG, USER_VIEW_TAG
    from serving.features import FeatureReader
    from serving.pyfunc_model import ITEM_ID, USER_ID

    settings = Settings(work_dir=work_dir)
    source = ModelSource(settings.mlflow_uri)
    tags = source.tags(name, source.alias_version(name, CHAMPION))
    reader = FeatureReader(feature_store(settings))
    return (
        reader.entity_ids(reader.view(tags[USER_VIEW_TAG]), USER_ID),
        reader.entity_ids(reader.view(tags[ITEM_VIEW_TAG]), ITEM_ID),
    )


def stage_profile(work_dir: Path, name: str, bodies: list[bytes]) -> dict[str, np.ndarray]:
    """Milliseconds per stage of each body through the service's own functions, in process."""
    from graphrec.settings import Settings
    from serving.app import create_app
    from serving.contract import CHAMPION
    from serving.ranking import encode, ranked
    from serving.schemas import PredictRequest

    settings = Settings(work_dir=work_dir, registered_model_name=name)
    app = create_app(settings, poll=False)
    times: dict[str, list[float]] = {stage: [] for stage in STAGES}

    async def run() -> None:
        async with app.router.lifespan_context(app):
            service = app.state.service
            binding = service.manager.pick(0, CHAMPION)
            for index, body in enumerate(bodies):
                marks = [time.perf_counter()]
                request = PredictRequest.model_validate_json(body)
                marks.append(time.perf_counter())
                user_row = service.reader.user_row(binding.user_view, binding.model.user_features, request.user_id)
                marks.append(time.perf_counter())
                item_ids = np.asarray(request.item_ids, dtype=np.int64)
                positions, found = binding.items.locate(item_ids)
                marks.append(time.perf_counter())
                scores = binding.score(user_row, positions)
                marks.append(time.perf_counter())
                result = ranked(binding, item_ids, scores, found, None, [], None)
                marks.append(time.perf_counter())
                encode(result, f"{index:032x}")
                marks.append(time.perf_counter())
                if index >= WARMUP:
                    for stage, start, end in zip(STAGES, marks[:-1], marks[1:], strict=True):
                        times[stage].append((end - start) * 1e3)

    asyncio.run(run())
    return {stage: np.asarray(values) for stage, values in times.items()}


def measure(
    work_dir: Path, families: list[str], requests: int, naive_requests: int, log_only: bool = False
) -> tuple[list[Case], dict]:
    """Every case and, per (family, candidates), the stage profile; ``log_only``: KCAN's request-log cases only."""
    from graphrec.environment import settings_environment
    from graphrec.settings import Settings
    from graphrec.testing import free_port, http_service

    cases: list[Case] = []
    profiles: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    names = {family: ensure_champion(work_dir, family) for family in [KCAN, *([] if log_only else families)]}

    def serve(family: str, workers: int = 1, naive: bool = False, threads: int = 1, request_log: bool = True):
        settings = Settings(
            work_dir=work_dir,
            registered_model_name=names[family],
            serving_torch_threads=threads,
            serving_request_log=request_log,
        )
        environment = os.environ | settings_environment(settings) | {"PYTHONPATH": str(REPO_ROOT)}
        port = free_port()
        return port, http_service(server_command(port, workers, naive), port, cwd=REPO_ROOT, env=environment)

    def record(case: Case) -> None:
        cases.append(case)
        print(
            f"  {case.family:<8}{case.path:<7}{case.candidates:>6}  {case.setup:<24}"
            f"p50 {case.percentile(50):7.2f}  p99 {case.percentile(99):7.2f} ms  {case.throughput:6.0f} req/s",
            flush=True,
        )

    for family, name in names.items():
        users, items = catalogue(work_dir, name)
        bodies = {n: request_bodies(users, items, n, WARMUP + requests, seed=n) for n in CANDIDATES}
        port, server = serve(family)
        with server:
            if family == KCAN:
                record(Case(family, "floor", 0, "sequential", sequential(port, [None] * (WARMUP + requests))))
            for n in CANDIDATES:
                record(Case(family, "ours", n, "sequential", sequential(port, bodies[n])))
                if family == KCAN:
                    for clients in CLIENTS[-1:] if log_only else CLIENTS:
                        latencies, rate = concurrent(port, bodies[n], clients)
                        record(Case(family, "ours", n, f"{clients} clients / 1 worker", latencies, rate))
        if family == KCAN and not log_only:
            port, server = serve(family, workers=2)
            with server:
                for n in CANDIDATES:
                    for clients in CLIENTS:
                        latencies, rate = concurrent(port, bodies[n], clients)
                        record(Case(family, "ours", n, f"{clients} clients / 2 workers", latencies, rate))
            port, server = serve(family, threads=2)
            with server:
                for n in CANDIDATES:
                    record(Case(family, "ours", n, "sequential, 2 threads", sequential(port, bodies[n])))
        if family == KCAN:
            port, server = serve(family, request_log=False)
            with server:
                for n in CANDIDATES:
                    record(Case(family, "ours", n, "sequential, log off", sequential(port, bodies[n])))
                    latencies, rate = concurrent(port, bodies[n], CLIENTS[-1])
                    record(Case(family, "ours", n, f"{CLIENTS[-1]} clients / 1 worker, log off", latencies, rate))
        if log_only:
            continue
        port, server = serve(family, naive=True)
        with server:
            for n in CANDIDATES:
                record(Case(family, "naive", n, "sequential", sequential(port, bodies[n][: WARMUP + naive_requests])))
        for n in CANDIDATES:
            profiles[(family, n)] = stage_profile(work_dir, name, bodies[n])
    return cases, profiles


def ratios(case: Case, base: Case) -> str:
    """``case``'s p50 and p99 over ``base``'s."""
    return f"{case.percentile(50) / base.percentile(50):.1f}x {case.percentile(99) / base.percentile(99):.1f}x"


def latency_table(cases: list[Case]) -> str:
    """p50/p99/p999 per case, with naive/ours and ours/floor ratios of the medians and p99s."""
    floor = next(c for c in cases if c.path == "floor")
    ours = {(c.family, c.candidates): c for c in cases if c.path == "ours" and c.setup == "sequential"}
    lines = [
        f"{'family':<8}{'path':<7}{'cands':>6} {'setup':<31}{'n':>6}{'p50':>8}{'p99':>8}{'p999':>8}{'req/s':>7}"
        "  ratios (p50, p99)",
    ]
    for case in cases:
        if case.path == "naive":
            ratio = "naive/ours " + ratios(case, ours[(case.family, case.candidates)])
        elif case.path == "ours":
            ratio = "/floor " + ratios(case, floor)
        else:
            ratio = "the HTTP floor (GET /healthz)"
        lines.append(
            f"{case.family:<8}{case.path:<7}{case.candidates:>6} {case.setup:<31}{len(case.latencies):>6}"
            f"{case.percentile(50):>8.2f}{case.percentile(99):>8.2f}{case.percentile(99.9):>8.2f}"
            f"{case.throughput:>7.0f}  {ratio}"
        )
    return "\n".join(lines)


def log_table(cases: list[Case]) -> str:
    """The request log's cost: each log-on case's p50 and p99 over the same case with the log off."""
    off = {
        (c.family, c.candidates, c.setup.removesuffix(", log off")): c for c in cases if c.setup.endswith(", log off")
    }
    lines = [f"{'cands':>6} {'setup':<22}{'on p50':>8}{'off p50':>8}{'on p99':>8}{'off p99':>8}  on/off (p50, p99)"]
    for case in cases:
        base = off.get((case.family, case.candidates, case.setup))
        if case.path == "ours" and base is not None:
            lines.append(
                f"{case.candidates:>6} {case.setup:<22}{case.percentile(50):>8.2f}{base.percentile(50):>8.2f}"
                f"{case.percentile(99):>8.2f}{base.percentile(99):>8.2f}  "
                f"{case.percentile(50) / base.percentile(50):.2f}x {case.percentile(99) / base.percentile(99):.2f}x"
            )
    return "\n".join(lines)


def stage_table(profiles: dict[tuple[str, int], dict[str, np.ndarray]], cases: list[Case]) -> str:
    """Median ms and share of the HTTP median per stage, and what is left for uvicorn, FastAPI and the client."""
    ours = {(c.family, c.candidates): c for c in cases if c.path == "ours" and c.setup == "sequential"}
    lines = [f"{'family':<8}{'cands':>6} " + "".join(f"{s:>15}" for s in (*STAGES, "HTTP+framework"))]
    for (family, n), stages in profiles.items():
        http_median = ours[(family, n)].percentile(50)
        medians = [float(np.median(stages[s])) for s in STAGES]
        rest = http_median - sum(medians)
        cells = [f"{m:.3f} {m / http_median:4.0%}" for m in (*medians, rest)]
        lines.append(f"{family:<8}{n:>6} " + "".join(f"{c:>15}" for c in cells))
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, measure, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "work", help="The demo's work dir.")
    parser.add_argument("--families", nargs="*", default=["bpr_mf"], help="Baseline families served beside KCAN.")
    parser.add_argument("--requests", type=int, default=2000, help="Timed requests per case (after the warm-up).")
    parser.add_argument("--naive-requests", type=int, default=200, help="Timed requests per naive case.")
    parser.add_argument("--request-log", action="store_true", help="Only KCAN with the request log on vs off.")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    load_before = os.getloadavg()
    work_dir = args.work_dir.resolve()
    cases, profiles = measure(work_dir, args.families, args.requests, args.naive_requests, args.request_log)
    print(latency_table(cases))
    print("\nthe request log (issue 15), on over off:")
    print(log_table(cases))
    if profiles:
        print("\nin-process stages, median ms and share of the sequential HTTP median:")
        print(stage_table(profiles, cases))
    print(f"machine: {os.cpu_count()} CPUs; load average (1/5/15 min) before {load_before}, after {os.getloadavg()}")


if __name__ == "__main__":
    main()
