"""Benchmark: the graph-stats feature build and the materialization, local engine against Ray (issue 16), in one run.

Per size: a seeded synthetic dataset, TransH snapshots of the seeded initial embeddings (set-up, not timed: no phase
reads their values, and a TransH epoch is most of an hour at 10^6 users on 2 cores), then each phase in a
fresh subprocess on its own copy of the work dir, while this process samples the resident memory of the subprocess
and all its descendants (the local Ray's GCS, raylet and workers included) every 0.1 s:

* ``build-local`` / ``build-ray``: ``build_features(families=("graph_stats",))`` (the neighbourhood aggregates);
* ``materialize-local``: graphrec's engine in-process; ``materialize-ray``: graphrec's engine with Ray tasks
  (featurestore/ray_engine.py); ``materialize-feast-ray``: Feast 0.67's own Ray compute engine
  (``batch_engine: {type: ray.engine}``), each into a fresh SQLite online store, all views of the build.

Ray runs locally with ``--ray-cpus`` CPUs and a ``--object-store-mb`` object store; its start-up is timed apart from
the phase (``ray start``). After the phases, the Ray build's arrays are compared bit for bit with the local build's,
and every materialization's stored SQLite values with the local engine's.

    .venv/bin/python -W ignore -m bench.ray_features --users 2000 100000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil

from feature_repo.catalog import ITEM_GRAPH_STATS, USER_GRAPH_STATS
from graphrec.settings import EngineKind, Settings

PHASES = ("build-local", "build-ray", "materialize-local", "materialize-ray", "materialize-feast-ray")
MIB = 2**20


def settings_for(work: Path, data: Path, engine: EngineKind, cpus: int, store_mb: int) -> Settings:
    """Settings of one phase's work dir (its own SQLite MLflow store and online store)."""
    return Settings(
        work_dir=work,
        dataset=str(data),
        mlflow_tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
        engine=engine,
        ray_num_cpus=cpus,
        ray_object_store_mb=store_mb,
    )


def run_phase(phase: str, settings: Settings) -> dict[str, float]:
    """One phase, in this (sub)process: its seconds, and Ray's start-up seconds when it uses Ray."""
    from featurestore.config import feature_store
    from featurestore.materialize import EPOCH
    from featurestore.ray_runtime import ray_connected, ray_target
    from featurestore.store import apply

    timings: dict[str, float] = {}
    if phase.endswith("ray"):
        started = time.perf_counter()
        ray_connected(ray_target(settings))
        timings["ray_start_s"] = time.perf_counter() - started
    if phase.startswith("build"):
        from training.features.jobs import build_features

        started = time.perf_counter()
        build_features(settings, families=("graph_stats",))
    else:
        apply(settings)
        engine = None
        if phase == "materialize-feast-ray":
            engine = {"type": "ray.engine", "max_workers": settings.ray_num_cpus, "write_concurrency": 1}
        store = feature_store(settings, batch_engine=engine)
        views = [view.name for view in store.list_feature_views() if view.name != "user_intent"]
        started = time.perf_counter()
        store.materialize(EPOCH, datetime.now(UTC), feature_views=views)
    timings["seconds"] = time.perf_counter() - started
    return timings


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # exited between listing and reading
            total += member.memory_info().rss
    return total


def measured(command: list[str]) -> tuple[dict[str, float], float]:
    """Run a phase subprocess; its printed timings and the peak RSS of its process tree (MiB)."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        watched = psutil.Process(child.pid)
        while not done.is_set():
            try:
                peak = max(peak, tree_rss(watched))
            except psutil.Error:
                return
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = child.communicate()
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with code {child.returncode}")
    return json.loads(out.strip().splitlines()[-1]), peak / MIB


def online_values(settings: Settings) -> dict[str, list]:
    """Stored online values per table (created time left out: it is the build's wall clock)."""
    query = 'SELECT entity_key, feature_name, value, event_ts FROM "{}" ORDER BY entity_key, feature_name'
    with closing(sqlite3.connect(settings.online_sqlite_path)) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {table: connection.execute(query.format(table)).fetchall() for table in tables}


def graph_stats(settings: Settings) -> dict[str, bytes]:
    """The latest graph-stats snapshot's feature columns, as bytes."""
    from featurestore.offline import read_latest

    columns = {}
    for spec in (USER_GRAPH_STATS, ITEM_GRAPH_STATS):
        frame = read_latest(settings.offline_dir, spec).sort_values(spec.entity.join_key)
        for name in spec.feature_names:
            values = frame[name].to_numpy()
            columns[f"{spec.name}.{name}"] = (np.stack(values) if values.dtype == object else values).tobytes()
    return columns


def bench_size(users: int, root: Path, cpus: int, store_mb: int) -> list[dict[str, object]]:
    """Every phase on one synthetic size; one row per phase."""
    from featurestore.store import apply
    from training.features.jobs import FeatureJobConfig, build_features
    from training.synth.generator import SynthConfig, generate_dataset

    data = root / f"data-{users}"
    generate_dataset(SynthConfig(n_users=users, seed=0), data)
    base = settings_for(root / f"base-{users}", data, EngineKind.local, cpus, store_mb)
    untrained = FeatureJobConfig(transh=replace(FeatureJobConfig().transh, epochs=0, eval_every=0))
    build_features(base, families=("transh", "graph_stats"), config=untrained)  # set-up: the snapshots to read
    apply(base)
    rows, works = [], {}
    for phase in PHASES:
        engine = EngineKind.ray if phase.endswith("ray") else EngineKind.local
        work = root / f"{phase}-{users}"
        if phase.startswith("build"):  # the TransH snapshots only: graph stats are what the phase writes
            shutil.copytree(base.offline_dir / "user_transh", work / "offline" / "user_transh")
            shutil.copytree(base.offline_dir / "item_transh", work / "offline" / "item_transh")
        else:
            shutil.copytree(base.offline_dir, work / "offline")
        settings = works[phase] = settings_for(work, data, engine, cpus, store_mb)
        command = [sys.executable, "-W", "ignore", "-m", "bench.ray_features", "--phase", phase]
        timings, peak = measured([*command, "--settings", settings.model_dump_json()])
        rows.append({"users": users, "phase": phase, **timings, "peak_mib": peak})
    same_build = graph_stats(works["build-ray"]) == graph_stats(works["build-local"])
    reference = online_values(works["materialize-local"])
    for row in rows:
        if row["phase"] == "build-ray":
            row["same"] = same_build
        elif row["phase"].startswith("materialize") and row["phase"] != "materialize-local":
            row["same"] = online_values(works[row["phase"]]) == reference
    return rows


def main() -> None:
    """Run the phases for each size and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[2_000, 100_000])
    parser.add_argument("--ray-cpus", type=int, default=2)
    parser.add_argument("--object-store-mb", type=int, default=512)
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # one phase, in a subprocess
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, Settings.model_validate_json(args.settings))))
        return
    print(f"{'users':>9} {'phase':<22} {'seconds':>8} {'ray start':>9} {'peak MiB':>9} {'vs local':>9} same")
    with tempfile.TemporaryDirectory(prefix="graphrec-bench-ray-") as folder:
        for users in args.users:
            rows = bench_size(users, Path(folder), args.ray_cpus, args.object_store_mb)
            local = {row["phase"].split("-")[0]: row["seconds"] for row in rows if row["phase"].endswith("local")}
            for row in rows:
                ratio = row["seconds"] / local[row["phase"].split("-")[0]]
                start = f"{row['ray_start_s']:.1f}" if "ray_start_s" in row else "-"
                same = {True: "identical", False: "DIFFERENT"}.get(row.get("same"), "reference")  # type: ignore[arg-type]
                print(
                    f"{users:>9,} {row['phase']:<22} {row['seconds']:>8.2f} {start:>9} {row['peak_mib']:>9,.0f} "
                    f"{ratio:>8.1f}x {same}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
