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
reference), ``sampled`` (DGL blocks, exact stars, default fanouts), ``sampled-star32`` (stars distilled from at
most 32 sampled in-edges), ``sampled-sparse`` (sampled, with the node tables' sparse row gradients stepped by
lazy Adam: no per-step work proportional to the number of nodes), ``sampled-sparse-star32``, and the same with
fanouts 5, 5 instead of 10, 10 (``-fan5``: a step's blocks about 4x smaller), and that with batches of 16,384 rows
instead of 2,048 (``-b16k``: at 10⁶ users a 2,048-row step's blocks already reach most nodes, so a step 8x larger
costs about 4x, not 8x). ``--modes`` picks some
(the first is the reference of the ratio column). Each mode runs in a fresh subprocess, so its peak RSS is its own; the
table gives seconds per epoch (validation excluded), the ratio to the reference in the same run, peak RSS, and the
load average around it. ``--dataset DIR`` keeps the generated set in DIR (generated only when DIR does not exist), so a
large set is built once. ``--max-batches N`` runs only the first N training steps of an epoch (the trainer's step:
the model's loss, its optimiser; no validation, so no AUC) and reports seconds per step (p50, mean) and a *projection*
of the epoch (mean × steps per epoch); the peak RSS is still that of building the data, graph and model at full size.
``--state DIR`` makes the whole epochs resumable (``training.resume``, saved every 10 minutes): an epoch longer than a
machine stays up (hours at 10⁶ users here) is run in several processes by rerunning the same command; its seconds add
up their training time (not the restarts' loading), and the peak RSS is the largest of theirs; a line per mode
then gives the processes' wall and CPU seconds (on a shared CPU the CPU seconds of a ``--threads 1`` run are the
load-independent cost).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from graphrec.settings import Settings
from training.data.lastfm import load_lastfm
from training.models.base import MODELS, Batch, ModelConfig, TrainingData, load_models
from training.trainer import fit, prepare_data, resolve_config, rows_as_tensors, seed_everything, set_threads


def epoch_seconds(name: str, data: TrainingData, epochs: int, seed: int) -> np.ndarray:
    """Training seconds of each of ``epochs`` epochs of model ``name`` with its default config."""
    config = resolve_config(name, None)
    config = type(config).model_validate(config.model_dump() | {"epochs": epochs, "patience": epochs})
    return np.array([record.seconds for record in fit(name, data, config, seed).history])


SYNTHETIC_MODES: dict[str, dict[str, object]] = {
    "full": {},
    "sampled": {"propagation": "sampled"},
    "sampled-star32": {"propagation": "sampled", "star_fanout": 32},
    "sampled-sparse": {"propagation": "sampled", "sparse_embeddings": True},
    "sampled-sparse-star32": {"propagation": "sampled", "sparse_embeddings": True, "star_fanout": 32},
    "sampled-sparse-fan5": {"propagation": "sampled", "sparse_embeddings": True, "fanouts": [5, 5]},
    "sampled-sparse-star32-fan5": {
        "propagation": "sampled",
        "sparse_embeddings": True,
        "star_fanout": 32,
        "fanouts": [5, 5],
    },
    "sampled-sparse-star32-fan5-b16k": {
        "propagation": "sampled",
        "sparse_embeddings": True,
        "star_fanout": 32,
        "fanouts": [5, 5],
        "batch_size": 16384,
    },
}


def bounded_steps(data: TrainingData, config: ModelConfig, seed: int, max_batches: int) -> list[float]:
    """Seconds of each of the first ``max_batches`` steps of KCAN's first epoch: the trainer's step (shuffled rows,
    the model's training loss, its optimiser), without the rest of the epoch or validation."""
    from training.models.kcan import KCAN

    seed_everything(seed)
    model = KCAN(config, data).train()
    optimizer = model.make_optimizer()
    users, items, labels = rows_as_tensors(data.split.train)
    order = torch.randperm(len(users), generator=torch.Generator().manual_seed(seed))
    seconds = []
    for start in range(0, min(len(order), max_batches * config.batch_size), config.batch_size):
        index = order[start : start + config.batch_size]
        started = time.perf_counter()
        loss = model.training_loss(Batch(users[index], items[index], labels[index]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - started)
    return seconds


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def record_segment(state_dir: Path, mode: str, every_s: float = 60.0) -> Callable[[], list[dict]]:
    """Keep this process's peak RSS, wall time and CPU time since the call in ``state_dir/MODE.segments/PID.json``,
    rewritten every ``every_s`` seconds by a daemon thread (a killed process leaves its last record); returns a
    function that writes the record once more and reads every segment's (this one included).

    The CPU seconds are what a segment cost on a shared machine: with ``--threads 1`` they are close to the wall time
    the same work takes on an idle core, whatever else ran beside it (a segment's wall time is not)."""
    folder = state_dir / f"{mode}.segments"
    folder.mkdir(parents=True, exist_ok=True)
    started, cpu_started = time.time(), cpu_seconds()

    def write() -> None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        record = {
            "pid": os.getpid(),
            "started": started,
            "seconds": time.time() - started,
            "cpu_seconds": cpu_seconds() - cpu_started,
            "peak_mib": peak,
        }
        (folder / f"{os.getpid()}.json").write_text(json.dumps(record))

    def keep_writing() -> None:
        while True:
            write()
            time.sleep(every_s)

    threading.Thread(target=keep_writing, daemon=True).start()

    def all_segments() -> list[dict]:
        write()
        return sorted((json.loads(path.read_text()) for path in folder.glob("*.json")), key=lambda r: r["started"])

    return all_segments


def synthetic_child(
    folder: Path, mode: str, epochs: int, seed: int, max_batches: int | None, state_dir: Path | None = None
) -> None:
    """Train KCAN in ``mode`` on the dataset in ``folder`` (whole epochs, or ``max_batches`` steps); print epoch
    seconds (measured or projected), AUC and peak RSS as one JSON line. With ``state_dir`` the fit is resumable
    (``training.resume``: a killed child rerun with the same arguments continues from its last saved state, every
    10 minutes) and the peak RSS is the largest of all the processes that worked on it."""
    from training.data.dataset import load_dataset_dir
    from training.models.kcan import KCANConfig

    data = prepare_data(load_dataset_dir(folder), seed)
    config = KCANConfig(epochs=epochs, patience=epochs, **SYNTHETIC_MODES[mode])
    summary: dict[str, object] = {
        "train_rows": len(data.split.train),
        "edges": int(data.ckg.triples.shape[0]),
        "nodes": int(data.ckg.n_nodes),
    }
    segments = None if state_dir is None else record_segment(state_dir, mode)
    if max_batches is None:
        resume_path = None if state_dir is None else state_dir / f"{mode}.state.pt"
        result = fit("kcan", data, config, seed, resume_path=resume_path)
        summary |= {"seconds": [record.seconds for record in result.history], "valid_auc": result.best_valid_auc}
    else:
        steps = bounded_steps(data, config, seed, max_batches)
        per_epoch = math.ceil(len(data.split.train) / config.batch_size)
        summary |= {
            "step_seconds": steps,
            "steps_per_epoch": per_epoch,
            "seconds": [float(np.mean(steps)) * per_epoch],  # a projection from the measured steps
            "valid_auc": float("nan"),
        }
    summary["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    if segments is not None:
        records = segments()
        summary |= {"peak_mib": max(r["peak_mib"] for r in records), "segments": records}
    print(json.dumps(summary))


@dataclass(frozen=True)
class SyntheticRun:
    """What ``--synthetic`` measures: the set (users, kept in ``dataset`` or a temporary folder), the modes (the
    first is the reference), whole epochs or ``max_batches`` steps each."""

    users: int
    modes: list[str]
    epochs: int
    seed: int
    threads: int | None
    max_batches: int | None
    dataset: Path | None
    state: Path | None = None


def run_modes(run: SyntheticRun, folder: Path) -> dict[str, dict]:
    """Each mode in its own subprocess on the set in ``folder``; its JSON summary plus the load average around it."""
    from training.synth.generator import SynthConfig, generate_dataset

    if not folder.exists():
        started = time.perf_counter()
        summary = generate_dataset(SynthConfig(n_users=run.users, seed=run.seed), folder)
        print(f"generated {summary} in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    rows = {}
    for mode in run.modes:
        command = [sys.executable, "-m", "bench.train_speed", "--child", mode, "--data", str(folder)]
        command += ["--epochs", str(run.epochs), "--seed", str(run.seed)]
        command += [] if run.threads is None else ["--threads", str(run.threads)]
        command += [] if run.max_batches is None else ["--max-batches", str(run.max_batches)]
        command += [] if run.state is None else ["--state", str(run.state)]
        load = os.getloadavg()[0]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        rows[mode] = json.loads(done.stdout.strip().splitlines()[-1]) | {"load": (load, os.getloadavg()[0])}
        print(f"{mode}: {rows[mode]}", file=sys.stderr, flush=True)
    return rows


def synthetic_run(run: SyntheticRun) -> None:
    """Generate the set (unless kept), run every mode in its own subprocess, print the table."""
    if run.dataset is not None:
        rows = run_modes(run, run.dataset)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            rows = run_modes(run, Path(scratch) / "data")
    first = next(iter(rows.values()))
    bounded = run.max_batches is not None
    extent = f"the first {run.max_batches} steps" if bounded else f"{run.epochs} epoch(s)"
    print(
        f"KCAN on synthetic {run.users:,} users ({first['train_rows']:,} training rows, {first['nodes']:,} nodes, "
        f"{first['edges']:,} CKG edges), {extent} per mode, threads {run.threads or 'default'}"
    )
    if bounded:
        print(f"s/epoch is PROJECTED: mean s/step x {first['steps_per_epoch']:,} steps per epoch; no validation")
        print(f"{'mode':<22}{'p50 s/step':>11}{'mean':>8}{'s/epoch':>9}{'vs ref':>8}{'peak MiB':>10}{'load':>10}")
    else:
        print(f"{'mode':<22}{'p50 s/epoch':>13}{'vs ref':>8}{'peak MiB':>10}{'valid AUC':>11}{'load':>10}")
    reference = float(np.median(rows[run.modes[0]]["seconds"]))
    for mode, row in rows.items():
        p50 = float(np.median(row["seconds"]))
        load = f"{row['load'][0]:.1f}-{row['load'][1]:.1f}"
        if bounded:
            steps = row["step_seconds"]
            print(
                f"{mode:<22}{np.median(steps):>11.2f}{np.mean(steps):>8.2f}{p50:>9.0f}{p50 / reference:>7.2f}x"
                f"{row['peak_mib']:>10.0f}{load:>10}"
            )
        else:
            print(
                f"{mode:<22}{p50:>13.1f}{p50 / reference:>7.2f}x{row['peak_mib']:>10.0f}{row['valid_auc']:>11.4f}"
                f"{load:>10}"
            )
    for mode, row in rows.items():
        if "segments" in row:
            print(f"{mode}: {segments_line(row['segments'])}")


def segments_line(segments: list[dict]) -> str:
    """How many processes worked on a resumable run, their wall and CPU seconds (a segment recorded before CPU time
    was kept counts in the wall total only, and is named)."""
    wall = sum(segment["seconds"] for segment in segments)
    timed = [segment for segment in segments if "cpu_seconds" in segment]
    line = f"{len(segments)} process(es), {wall:,.0f} s wall, {sum(s['cpu_seconds'] for s in timed):,.0f} s CPU"
    if untimed := [segment for segment in segments if "cpu_seconds" not in segment]:
        line += f" (no CPU record for {len(untimed)} of them, {sum(s['seconds'] for s in untimed):,.0f} s wall)"
    return line


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
    parser.add_argument(
        "--modes", default="full,sampled,sampled-star32", help=f"--synthetic: comma-separated, of {[*SYNTHETIC_MODES]}"
    )
    parser.add_argument("--max-batches", type=int, default=None, help="--synthetic: time only the first N steps")
    parser.add_argument("--dataset", type=Path, default=None, help="--synthetic: keep the set here (reused if present)")
    parser.add_argument(
        "--state", type=Path, default=None, help="--synthetic: resumable epochs, state kept here (rerun to resume)"
    )
    parser.add_argument("--child", choices=list(SYNTHETIC_MODES), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads is not None:
        set_threads(args.threads)
    if args.child is not None:
        synthetic_child(args.data, args.child, args.epochs, args.seed, args.max_batches, args.state)
        return
    if args.synthetic is not None:
        modes = args.modes.split(",")
        if unknown := [m for m in modes if m not in SYNTHETIC_MODES]:
            parser.error(f"--modes: unknown {unknown}; known: {list(SYNTHETIC_MODES)}")
        if args.max_batches is not None and args.max_batches < 1:
            parser.error(f"--max-batches must be at least 1, got {args.max_batches}")
        if args.state is not None and args.max_batches is not None:
            parser.error("--state resumes whole epochs; it cannot be combined with --max-batches")
        run = SyntheticRun(
            args.synthetic, modes, args.epochs, args.seed, args.threads, args.max_batches, args.dataset, args.state
        )
        synthetic_run(run)
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
