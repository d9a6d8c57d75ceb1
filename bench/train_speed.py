"""Seconds per training epoch of KCAN (when registered) and KGAT on Last.FM, with p50/p90 over epochs.

Usage, from the repository root: ``python -m bench.train_speed [--epochs 5] [--threads 1] [--seed 2021]`` (run as a
module so that sibling scripts such as ``bench/serving.py`` cannot shadow the ``serving`` package). Each model trains
for exactly ``--epochs`` epochs (early stopping off) through the generic trainer with its default config, so "an
epoch" means the same thing for both: one pass over the labelled training rows, the per-epoch hook included,
validation excluded. On a shared CPU the numbers are
noisy; compare runs made back to back. A RecBole KGAT row is added only if ``import recbole`` works (it is not a
graphrec dependency; the bench skips it cleanly otherwise).

``--synthetic USERS`` (issue 16) instead times KCAN's training modes on a seeded synthetic set of that many users
(``training.synth``, generated into a temporary folder): ``full`` (whole-graph propagation every step, the
reference), ``sampled`` (DGL blocks, exact stars, default fanouts) and ``sampled-star32`` (stars distilled from at
most 32 sampled in-edges). Each mode runs in a fresh subprocess, so its peak RSS is its own; the table gives seconds
per epoch (validation excluded), the ratio to ``full`` in the same run, peak RSS, and the load average around it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from graphrec.settings import Settings
from training.data.lastfm import load_lastfm
from training.models.base import MODELS, TrainingData, load_models
from training.trainer import fit, prepare_data, resolve_config, set_threads


def epoch_seconds(name: str, data: TrainingData, epochs: int, seed: int) -> np.ndarray:
    """Training seconds of each of ``epochs`` epochs of model ``name`` with its default config."""
    config = resolve_config(name, None)
    config = type(config).model_validate(config.model_dump() | {"epochs": epochs, "patience": epochs})
    return np.array([record.seconds for record in fit(name, data, config, seed).history])


SYNTHETIC_MODES: dict[str, dict[str, object]] = {
    "full": {},
    "sampled": {"propagation": "sampled"},
    "sampled-star32": {"propagation": "sampled", "star_fanout": 32},
}


def synthetic_child(folder: Path, mode: str, epochs: int, seed: int) -> None:
    """Train KCAN in ``mode`` on the dataset in ``folder``; print epoch seconds, AUC and peak RSS as one JSON line."""
    from training.data.dataset import load_dataset_dir
    from training.models.kcan import KCANConfig

    data = prepare_data(load_dataset_dir(folder), seed)
    config = KCANConfig(epochs=epochs, patience=epochs, **SYNTHETIC_MODES[mode])
    result = fit("kcan", data, config, seed)
    summary = {
        "seconds": [record.seconds for record in result.history],
        "valid_auc": result.best_valid_auc,
        "train_rows": len(data.split.train),
        "edges": int(data.ckg.triples.shape[0]),
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux reports KiB
    }
    print(json.dumps(summary))


def synthetic_run(users: int, epochs: int, seed: int, threads: int | None) -> None:
    """Generate the set, run every mode in its own subprocess, print the table."""
    from training.synth.generator import SynthConfig, generate_dataset

    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "data"
        generate_dataset(SynthConfig(n_users=users, seed=seed), folder)
        for mode in SYNTHETIC_MODES:
            command = [sys.executable, "-m", "bench.train_speed", "--child", mode, "--data", str(folder)]
            command += ["--epochs", str(epochs), "--seed", str(seed)]
            command += [] if threads is None else ["--threads", str(threads)]
            load = os.getloadavg()[0]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            rows[mode] = json.loads(done.stdout.strip().splitlines()[-1]) | {"load": (load, os.getloadavg()[0])}
            print(f"{mode}: {rows[mode]}", file=sys.stderr, flush=True)
    first = next(iter(rows.values()))
    print(
        f"KCAN on synthetic {users:,} users ({first['train_rows']:,} training rows, {first['edges']:,} CKG edges), "
        f"{epochs} epoch(s) per mode, threads {threads or 'default'}"
    )
    print(f"{'mode':<16}{'p50 s/epoch':>13}{'vs full':>9}{'peak MiB':>10}{'valid AUC':>11}{'load':>12}")
    reference = float(np.median(rows["full"]["seconds"]))
    for mode, row in rows.items():
        p50 = float(np.median(row["seconds"]))
        load = f"{row['load'][0]:.1f}-{row['load'][1]:.1f}"
        print(
            f"{mode:<16}{p50:>13.1f}{p50 / reference:>8.2f}x{row['peak_mib']:>10.0f}{row['valid_auc']:>11.4f}{load:>12}"
        )


def recbole_available() -> bool:
    """Whether RecBole can be imported (it is optional and not installed by graphrec)."""
    try:
        import recbole  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch and DGL CPU threads (default: theirs)")
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--synthetic", type=int, default=None, metavar="USERS", help="time KCAN's modes instead")
    parser.add_argument("--child", choices=list(SYNTHETIC_MODES), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads is not None:
        set_threads(args.threads)
    if args.child is not None:
        synthetic_child(args.data, args.child, args.epochs, args.seed)
        return
    if args.synthetic is not None:
        synthetic_run(args.synthetic, args.epochs, args.seed, args.threads)
        return
    load_models()
    data = prepare_data(load_lastfm(Settings().data_dir), args.seed)
    names = [n for n in ("kcan", "kgat") if MODELS.get(n) is not None]
    if "kcan" not in names:
        print("kcan is not registered: timing KGAT only")
    rows = {name: epoch_seconds(name, data, args.epochs, args.seed) for name in names}
    print(f"Last.FM, {args.epochs} epochs each, torch threads {torch.get_num_threads()} (shared CPU: noisy)")
    print(f"{'model':<10}{'p50 s/epoch':>13}{'p90 s/epoch':>13}{'mean':>9}")
    for name, seconds in rows.items():
        p50, p90 = np.percentile(seconds, [50, 90])
        print(f"{name:<10}{p50:>13.2f}{p90:>13.2f}{seconds.mean():>9.2f}")
    if len(rows) == 2:
        print(f"KCAN/KGAT p50 ratio: {np.median(rows['kcan']) / np.median(rows['kgat']):.2f}")
    if recbole_available():
        print("recbole is importable, but a like-for-like RecBole KGAT run needs its own config; not run here")
    else:
        print(
            "RecBole KGAT: skipped (recbole not installed); reference: RecBole 1.2.1 KGAT measured at 1.07 s/epoch"
            " on this machine class (BENCHMARKS.md)"
        )


if __name__ == "__main__":
    main()
