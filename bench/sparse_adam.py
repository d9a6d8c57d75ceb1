"""Seconds per optimiser step on a node table's sparse row gradient: graphrec's LazyRowAdam against torch's SparseAdam.

Usage, from the repository root: ``python -m bench.sparse_adam [--rows 1117027] [--dim 64] [--touched 200000 600000]
[--steps 20] [--threads 1]``. The defaults are the node table of the 10⁶-user synthetic set (1,117,027 nodes × 64)
and two shares of it touched per step (a sampled KCAN step at 10⁶ touches a few hundred thousand rows). For each
count of touched rows both optimisers step the same table from the same start through the same ``--steps`` random
coalesced gradients (``--warmup`` untimed steps first); the bench prints p50/p90 seconds per step, the ratio of
LazyRowAdam to SparseAdam (the baseline, same run) and the largest difference of the two tables at the end (they
compute the same update; only rounding may differ).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from training.models.optimizers import LazyRowAdam

PERCENTILES = (50, 90)


def timed_steps(
    optimizer: torch.optim.Optimizer, table: nn.Parameter, grads: Iterator[torch.Tensor], warmup: int
) -> np.ndarray:
    """Seconds of each step of ``optimizer`` on ``table`` with the gradients ``grads``, after ``warmup`` untimed."""
    seconds = []
    for index, grad in enumerate(grads):
        table.grad = grad
        started = time.perf_counter()
        optimizer.step()
        if index >= warmup:
            seconds.append(time.perf_counter() - started)
    return np.array(seconds)


def row_gradients(rows: int, dim: int, touched: int, count: int, seed: int) -> Iterator[torch.Tensor]:
    """``count`` coalesced sparse gradients of a ``rows`` × ``dim`` table, each on ``touched`` random rows; the same
    ones for the same ``seed`` (drawn one at a time: 20 of them at 600k rows would hold 3 GiB)."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count):
        indices = torch.randperm(rows, generator=generator)[:touched].sort().values
        values = torch.randn(touched, dim, generator=generator)
        yield torch.sparse_coo_tensor(indices[None], values, (rows, dim), is_coalesced=True, check_invariants=False)


def bench_touched(rows: int, dim: int, touched: int, steps: int, warmup: int, seed: int) -> None:
    """Time both optimisers over the same gradients on ``touched`` rows a step and print one line each."""
    start = torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed + 1))
    baseline_table, ours_table = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    count = steps + warmup
    baseline_grads, ours_grads = (row_gradients(rows, dim, touched, count, seed) for _ in range(2))
    baseline = timed_steps(torch.optim.SparseAdam([baseline_table], lr=0.01), baseline_table, baseline_grads, warmup)
    ours = timed_steps(LazyRowAdam([ours_table], lr=0.01), ours_table, ours_grads, warmup)
    difference = float((baseline_table.detach() - ours_table.detach()).abs().max())
    print(f"{touched:>9,} rows touched of {rows:,} × {dim}, {steps} steps:")
    for name, seconds in (("SparseAdam (torch)", baseline), ("LazyRowAdam", ours)):
        cells = "  ".join(f"p{p} {np.percentile(seconds, p):6.3f} s" for p in PERCENTILES)
        ratio = np.percentile(seconds, 50) / np.percentile(baseline, 50)
        print(f"  {name:<19}{cells}  {ratio:5.2f}x")
    print(f"  largest |difference| of the tables after the steps: {difference:.2e}")


def main() -> None:
    """Run every count of touched rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_117_027)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--touched", type=int, nargs="+", default=[200_000, 600_000])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2021)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); ratio: p50 against torch's SparseAdam")
    for touched in args.touched:
        bench_touched(args.rows, args.dim, touched, args.steps, args.warmup, args.seed)


if __name__ == "__main__":
    main()
