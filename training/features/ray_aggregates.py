"""The neighbourhood aggregates as a Ray Data pipeline over partitioned parquet (``GRAPHREC_ENGINE=ray``).

1. The driver cuts users and items into contiguous id ranges (two per cluster CPU) and writes each edge list as
   parquet partitioned by the range of its destination (``<staging>/edges/<kind>/part=<k>/``, hive layout).
2. The broadcast tables (TransH of users and entities, active flags, terciles, the two-hop reach index: the
   item x user incidence or the item sketches, reach.py) go into Ray's object store once.
3. A Ray Data pipeline maps every range to a task that reads only its partition's parquet, runs blocks.py's kernel
   and writes its rows to ``<staging>/out/<kind>/part-<k>.parquet``.
4. The driver reads those files back in id order: the same arrays, bit for bit, as the local engine's (blocks.py
   says why), which then become the offline snapshots exactly as in a local build.

The staging folder lies in the work dir, which a multi-machine cluster shares (docs/DEPLOY.md), and is deleted after
the build.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from featurestore.ray_runtime import RayTarget, cluster_cpus, ray_connected
from training.features.aggregates import GraphEdges
from training.features.blocks import Sources, item_block, user_block
from training.features.reach import TwoHopIndex

RANGES_PER_CPU = 2
PART = "part"
USERS, ITEMS = "user", "item"


def node_ranges(n_nodes: int, parts: int) -> np.ndarray:
    """Bounds ``[b0=0, b1, ..., bk=n_nodes]`` of up to ``parts`` contiguous, non-empty id ranges."""
    return np.unique(np.linspace(0, n_nodes, max(1, min(parts, n_nodes)) + 1).astype(np.int64))


def write_partitioned(folder: Path, columns: dict[str, np.ndarray], destination: str, bounds: np.ndarray) -> None:
    """Write an edge list as parquet partitioned by the id range of its ``destination`` column (hive layout)."""
    part = np.searchsorted(bounds, columns[destination], side="right") - 1
    table = pa.table({**columns, PART: part.astype(np.int32)})
    layout = ds.partitioning(pa.schema([(PART, pa.int32())]), flavor="hive")
    ds.write_dataset(table, folder, format="parquet", partitioning=layout, existing_data_behavior="error")


def read_partition(folder: Path, part: int, names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """The columns ``names`` of one partition of an edge list (only that partition's files are read)."""
    if not folder.exists():
        return tuple(np.empty(0, dtype=np.int64) for _ in names)
    layout = ds.partitioning(pa.schema([(PART, pa.int32())]), flavor="hive")
    table = ds.dataset(folder, format="parquet", partitioning=layout).to_table(
        columns=list(names), filter=ds.field(PART) == part
    )
    return tuple(table[name].to_numpy().astype(np.int64) for name in names)


def _column(values: np.ndarray) -> pa.Array:
    if values.ndim == 2:
        return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])
    return pa.array(values)


def _resolved(value: Any) -> Any:
    """An object-store reference fetched, anything else as is."""
    import ray

    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


def run_block(task: dict[str, Any], staging: str, sources: Any, reach: Any) -> dict[str, Any]:
    """One task of the pipeline (on a Ray worker): the aggregates of one id range, written to parquet."""
    root, kind, part = Path(staging), task["kind"], int(task[PART])
    low, high = int(task["low"]), int(task["high"])
    sources = _resolved(sources)
    if kind == USERS:
        interactions = read_partition(root / "edges" / "interactions_by_user", part, ("item", "user"))
        friends = read_partition(root / "edges" / "friends", part, ("src", "dst"))
        features = user_block(low, high, interactions, friends, _resolved(reach), sources)  # type: ignore[arg-type]
    else:
        interactions = read_partition(root / "edges" / "interactions_by_item", part, ("user", "item"))
        kg = read_partition(root / "edges" / "kg", part, ("src", "dst", "rel"))
        features = item_block(low, high, interactions, kg, sources)  # type: ignore[arg-type]
    out = root / "out" / kind / f"part-{part:05d}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    columns = {"id": pa.array(np.arange(low, high, dtype=np.int64))} | {k: _column(v) for k, v in features.items()}
    pq.write_table(pa.table(columns), out)
    return {"kind": kind, PART: part, "rows": high - low}


def read_block_outputs(folder: Path, n_nodes: int) -> dict[str, np.ndarray]:
    """The per-range outputs of one node kind, concatenated in id order, as the kernel's arrays."""
    table = pa.concat_tables([pq.read_table(path) for path in sorted(folder.glob("part-*.parquet"))])
    ids = table["id"].to_numpy()
    if not np.array_equal(ids, np.arange(n_nodes)):
        raise RuntimeError(f"the Ray aggregates of {folder.name} cover {len(ids)} of {n_nodes} ids, not each once")
    arrays = {}
    for name in table.column_names[1:]:
        column = table[name].combine_chunks()
        if pa.types.is_fixed_size_list(column.type):
            arrays[name] = column.flatten().to_numpy().reshape(len(column), column.type.list_size)
        else:
            arrays[name] = column.to_numpy()
    return arrays


def ray_aggregates(
    edges: GraphEdges, sources: Sources, reach: TwoHopIndex, staging: Path, target: RayTarget
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """User and item graph-stats features computed by a Ray Data pipeline (module docstring); equal to
    ``aggregates.user_aggregates`` / ``item_aggregates`` given the same two-hop ``reach`` index."""
    ray = ray_connected(target)
    from ray import data as ray_data

    context = ray_data.DataContext.get_current()
    context.enable_progress_bars = context.print_on_execution_start = False  # the CLI draws its own display
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "bars disabled": we disabled them
    parts = cluster_cpus(ray) * RANGES_PER_CPU
    user_bounds, item_bounds = node_ranges(sources.n_users, parts), node_ranges(sources.n_items, parts)
    users, items = edges.interactions
    on_items = edges.kg[1] < sources.n_items
    if staging.exists():
        raise FileExistsError(f"Ray staging folder {staging} already exists: another build is using it")
    try:
        folder = staging / "edges"
        write_partitioned(folder / "interactions_by_user", {"item": items, "user": users}, "user", user_bounds)
        write_partitioned(folder / "friends", {"src": edges.friends[0], "dst": edges.friends[1]}, "dst", user_bounds)
        kept = {"user": users[items < sources.n_items], "item": items[items < sources.n_items]}
        write_partitioned(folder / "interactions_by_item", kept, "item", item_bounds)
        kg = {"src": edges.kg[0][on_items], "dst": edges.kg[1][on_items], "rel": edges.kg[2][on_items]}
        write_partitioned(folder / "kg", kg, "dst", item_bounds)
        tasks = [
            {"kind": kind, PART: k, "low": int(bounds[k]), "high": int(bounds[k + 1])}
            for kind, bounds in ((USERS, user_bounds), (ITEMS, item_bounds))
            for k in range(len(bounds) - 1)
        ]
        shared = {
            "staging": str(staging),
            "sources": ray.put(sources),
            "reach": ray.put(reach),
        }
        pipeline = ray_data.from_items(tasks, override_num_blocks=len(tasks)).map(run_block, fn_kwargs=shared)
        done = pipeline.take_all()
        if len(done) != len(tasks):
            raise RuntimeError(f"the Ray aggregates pipeline finished {len(done)} of {len(tasks)} ranges")
        return (
            read_block_outputs(staging / "out" / USERS, sources.n_users),
            read_block_outputs(staging / "out" / ITEMS, sources.n_items),
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
