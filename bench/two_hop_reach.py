"""Benchmark: the user two-hop reach, exact sparse product against the HyperLogLog sketch (issue 16), in one run.

Per size: the seeded synthetic dataset and the feature build's own input (the split's training positives, seed 0),
then the exact count (the baseline; skipped above ``--exact-max-pairs`` pair visits, where it does not finish) and
the sketched one (item sketches built, then merged per user), each timed, with the sketch's relative error against
the exact count in percentiles over users with any reach.

    .venv/bin/python -W ignore -m bench.two_hop_reach --users 100000 1000000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from training.data.dataset import load_dataset_dir
from training.data.splits import ctr_split
from training.features.reach import (
    TwoHopIndex,
    incidence,
    item_sketches,
    pair_visits,
    two_hop_index,
    two_hop_reach,
)
from training.synth.generator import SynthConfig, generate_dataset

PERCENTILES = (50, 90, 99, 100)


def timed_reach(user_items: sp.csr_matrix, index: TwoHopIndex) -> tuple[np.ndarray, float]:
    """The reach of every user and its seconds."""
    started = time.perf_counter()
    reach = two_hop_reach(user_items, index)
    return reach, time.perf_counter() - started


def bench_size(users: int, root: Path, exact_max_pairs: int) -> None:
    """Time both counts on one size and print one block of lines."""
    data = root / f"data-{users}"
    generate_dataset(SynthConfig(n_users=users, seed=0), data)
    dataset = load_dataset_dir(data)
    positives = ctr_split(dataset.interactions, 0).train_positives()
    user_ids, item_ids = positives["user"].to_numpy(np.int64), positives["item"].to_numpy(np.int64)
    n_users, n_items = dataset.n_users, dataset.n_items
    user_items = incidence(user_ids, item_ids, n_users, n_items)
    visits = pair_visits(item_ids, n_items)
    print(f"{users:,} users: {len(user_ids):,} training interactions, {n_items:,} items, {visits:.3g} pair visits")
    exact, exact_seconds = None, 0.0
    if visits <= exact_max_pairs:
        started = time.perf_counter()
        exact, _ = timed_reach(user_items, two_hop_index(item_ids, user_ids, n_items, n_users, exact_max_pairs=visits))
        exact_seconds = time.perf_counter() - started
        print(f"  exact     {exact_seconds:8.2f} s  1.00x (baseline)")
    else:
        print(f"  exact     skipped: {visits:.3g} pair visits > --exact-max-pairs {exact_max_pairs:.3g}")
    started = time.perf_counter()
    sketches = item_sketches(item_ids, user_ids, n_items)
    built = time.perf_counter() - started
    sketched, merged = timed_reach(user_items, TwoHopIndex(item_sketches=sketches))
    total = built + merged
    ratio = f"{total / exact_seconds:.2f}x" if exact is not None else "  -  "
    print(
        f"  sketched  {total:8.2f} s  {ratio}  (sketches {built:.2f} s, merge {merged:.2f} s, "
        f"{sketches.nbytes / 2**20:.0f} MiB)"
    )
    if exact is not None:
        reached = exact > 0
        error = np.abs(sketched[reached] - exact[reached]) / exact[reached]
        cells = ", ".join(f"p{p} {np.percentile(error, p):.2%}" for p in PERCENTILES)
        print(f"  relative error over {reached.sum():,} users with reach: {cells}")


def main() -> None:
    """Run every size."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[100_000])
    parser.add_argument("--exact-max-pairs", type=float, default=2e10, help="skip the exact count above this work")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="graphrec-bench-reach-") as folder:
        for users in args.users:
            bench_size(users, Path(folder), int(args.exact_max_pairs))


if __name__ == "__main__":
    main()
