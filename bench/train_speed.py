"""Seconds per training epoch of KCAN (when registered) and KGAT on Last.FM, with p50/p90 over epochs.

Usage, from the repository root: ``python -m bench.train_speed [--epochs 5] [--threads 1] [--seed 2021]`` (run as a
module so that sibling scripts such as ``bench/serving.py`` cannot shadow the ``serving`` package). Each model trains
for exactly ``--epochs`` epochs (early stopping off) through the generic trainer with its default config, so "an
epoch" means the same thing for both: one pass over the labelled training rows, the per-epoch hook included,
validation excluded. On a shared CPU the numbers are
noisy; compare runs made back to back. A RecBole KGAT row is added only if ``import recbole`` works (it is not a
graphrec dependency; the bench skips it cleanly otherwise).
"""

from __future__ import annotations

import argparse

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
    args = parser.parse_args()
    if args.threads is not None:
        set_threads(args.threads)
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
