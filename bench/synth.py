"""Benchmark the synthetic generator: users, rows written, seconds and peak memory at several population sizes.

Each size runs in a fresh subprocess (so peak RSS is that run's alone) writing into a temporary folder that is
removed afterwards. Usage: ``python bench/synth.py [--sizes 10000 100000 1000000] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
REPO_ROOT = Path(__file__).resolve().parent.parent


def run_child(n_users: int, seed: int, out: Path) -> None:
    """Generate one dataset and print its summary and this process's peak RSS as one JSON line."""
    sys.path.insert(0, str(REPO_ROOT))
    from training.synth.generator import SynthConfig, generate_dataset

    summary = generate_dataset(SynthConfig(n_users=n_users, seed=seed), out)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(json.dumps({"rows": summary.rows_written, "seconds": summary.seconds, "peak_mib": peak_mib}))


def measure(n_users: int, seed: int, scratch: Path) -> dict[str, float]:
    """Run one size in a fresh interpreter and return its rows, generation seconds and peak RSS (MiB)."""
    command = [sys.executable, __file__, "--child", str(n_users), "--seed", str(seed), "--out", str(scratch / "data")]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    """Parse arguments; as parent, run every size and print the table, as child, run one size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="numbers of users")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        run_child(args.child, args.seed, args.out)
        return
    print(f"{'users':>12} {'rows written':>14} {'seconds':>9} {'peak RSS (MiB)':>15}", flush=True)
    for n_users in args.sizes:
        with tempfile.TemporaryDirectory(prefix="graphrec-synth-bench-") as scratch:
            row = measure(n_users, args.seed, Path(scratch))
        print(f"{n_users:>12,} {row['rows']:>14,} {row['seconds']:>9.1f} {row['peak_mib']:>15.0f}", flush=True)


if __name__ == "__main__":
    main()
