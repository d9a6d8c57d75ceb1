"""Speed and quality of graphrec's TransH against PyKEEN 1.11.1's TransH on the twin-aware Last.FM KG split.

Both train with the same split, dim, negatives per positive (Bernoulli sampling), batch size, epochs, Adam learning
rate and margin ranking loss (margin 1), under torch.set_num_threads(--threads); PyKEEN keeps its TransH defaults
otherwise (soft-constraint weight 0.05, as ours). Kept different on purpose: ours scores with the paper's squared
distance, PyKEEN with its default unsquared L2 norm.
Speed: positive training triples per second from the median epoch time (robust to other load on the machine).
Quality: filtered (train + valid + test) realistic MRR and Hits@10 on the same test triples, averaged over
--repeats seeds; PyKEEN's model is scored both by PyKEEN's RankBasedEvaluator and by ours on its embeddings.

PyKEEN is an optional bench dependency, imported only in here: pip install pykeen==1.11.1.

    .venv/bin/python bench/transh.py [--kg PATH] [--epochs 100] [--repeats 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import statistics
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from training.kge.evaluate import evaluate
from training.kge.split import TripleSplit, naive_leak_share, twin_aware_split, twin_share
from training.kge.train import TransHConfig, fit
from training.kge.transh import TransH

if TYPE_CHECKING:
    from pykeen.models import ERModel

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_KG = REPO_ROOT.parent / "shared" / "data" / "lastfm-kg" / "kg_final.txt"


@dataclass
class Run:
    """One training run: per-epoch seconds and test metrics (by evaluator name)."""

    epoch_seconds: list[float]
    metrics: dict[str, dict[str, float]]


def run_ours(split: TripleSplit, n_nodes: int, n_relations: int, config: TransHConfig) -> Run:
    """Train graphrec's TransH and evaluate it with graphrec's filtered evaluator."""
    model, history = fit(split.train, n_nodes, n_relations, config)
    return Run([r["seconds"] for r in history], {"graphrec": evaluate(model, split.test, split.triples)})


def pykeen_as_transh(pykeen_model: ERModel, n_nodes: int, n_relations: int, dim: int) -> TransH:
    """Copy a PyKEEN TransH's tables into ours so our evaluator can score it.

    PyKEEN 1.11.1 hands relation representation 0 to its interaction as the normal w_r and representation 1 (the
    unit-normalised one) as the translation d_r; checked against ``score_hrt``. Our ranking does not assume unit
    normals, and PyKEEN's unsquared norm ranks exactly as our squared one.
    """
    ours = TransH(n_nodes, n_relations, dim)
    with torch.no_grad():
        ours.entity.weight.copy_(pykeen_model.entity_representations[0](indices=None))
        ours.normal.weight.copy_(pykeen_model.relation_representations[0](indices=None))
        ours.translation.weight.copy_(pykeen_model.relation_representations[1](indices=None))
    return ours


def run_pykeen(split: TripleSplit, n_nodes: int, n_relations: int, config: TransHConfig) -> Run:
    """Train PyKEEN's TransH with the same settings; evaluate with PyKEEN's evaluator and with ours."""
    logging.getLogger("torch_max_mem").setLevel(logging.ERROR)  # "tensors on device_types={'cpu'}" on every evaluate
    warnings.filterwarnings("ignore", message=".*pin_memory.*")  # PyKEEN's DataLoader asks for pinned memory
    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.losses import MarginRankingLoss
    from pykeen.models import TransH as PyKeenTransH
    from pykeen.training import SLCWATrainingLoop
    from pykeen.training.callbacks import TrainingCallback
    from pykeen.triples import CoreTriplesFactory

    class EpochTimer(TrainingCallback):
        """Seconds between consecutive epoch ends (the first from construction, just before training)."""

        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self.last = time.perf_counter()

        def post_epoch(self, epoch: int, epoch_loss: float, **kwargs: object) -> None:
            now = time.perf_counter()
            self.seconds.append(now - self.last)
            self.last = now

    def factory(triples: np.ndarray) -> CoreTriplesFactory:
        return CoreTriplesFactory.create(torch.from_numpy(triples), num_entities=n_nodes, num_relations=n_relations)

    train = factory(split.train)
    model = PyKeenTransH(
        triples_factory=train,
        embedding_dim=config.dim,
        loss=MarginRankingLoss(margin=config.margin),
        random_seed=config.seed,
    )
    loop = SLCWATrainingLoop(
        model=model,
        triples_factory=train,
        optimizer=torch.optim.Adam(model.get_grad_params(), lr=config.lr),
        negative_sampler="bernoulli",
        negative_sampler_kwargs=dict(num_negs_per_pos=config.num_negatives),
    )
    timer = EpochTimer()
    loop.train(
        triples_factory=train, num_epochs=config.epochs, batch_size=config.batch_size, use_tqdm=False, callbacks=timer
    )
    result = RankBasedEvaluator(filtered=True).evaluate(
        model,
        torch.from_numpy(split.test),
        batch_size=256,
        use_tqdm=False,
        additional_filter_triples=[torch.from_numpy(split.train), torch.from_numpy(split.valid)],
    )
    pykeen_metrics = {
        "mrr": float(result.get_metric("both.realistic.inverse_harmonic_mean_rank")),
        "hits@10": float(result.get_metric("both.realistic.hits_at_10")),
    }
    ours = pykeen_as_transh(model, n_nodes, n_relations, config.dim)
    return Run(timer.seconds, {"pykeen": pykeen_metrics, "graphrec": evaluate(ours, split.test, split.triples)})


def summarise(runs: list[Run], n_train: int) -> dict[str, float]:
    """Median seconds per epoch over all epochs of all runs, and the matching positive triples per second."""
    seconds = statistics.median(s for run in runs for s in run.epoch_seconds)
    return {"s_per_epoch": seconds, "triples_per_s": n_train / seconds}


def metric_values(runs: list[Run], evaluator: str, name: str) -> list[float]:
    """One test metric per run (seed)."""
    return [run.metrics[evaluator][name] for run in runs]


def mean_sd(values: list[float]) -> str:
    """Mean ± sample standard deviation over seeds (just the mean for one seed)."""
    if len(values) < 2:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f}±{statistics.stdev(values):.4f}"


def print_table(ours: list[Run], theirs: list[Run], n_train: int, epochs: int) -> None:
    """The comparison table: speed, speed ratio, and test quality (mean ± sd over seeds) with the evaluator per row."""
    speed_ours, speed_theirs = summarise(ours, n_train), summarise(theirs, n_train)
    ratio = speed_ours["triples_per_s"] / speed_theirs["triples_per_s"]
    columns = [("model", "<17"), ("evaluator", "<10"), ("epochs", ">7"), ("s/epoch", ">9"), ("triples/s", ">11")]
    columns += [("ratio", ">7"), ("MRR", ">16"), ("Hits@10", ">16")]
    header = "".join(f"{name:{align}}" for name, align in columns)
    print(header)
    print("-" * len(header))
    rows = [
        ("graphrec TransH", "graphrec", ours, speed_ours, f"{ratio:.2f}x"),
        ("PyKEEN TransH", "pykeen", theirs, speed_theirs, "1.00x"),
        ("PyKEEN TransH", "graphrec", theirs, speed_theirs, ""),
    ]
    for name, evaluator, runs, speed, ratio_text in rows:
        print(
            f"{name:<17}{evaluator:<10}{epochs:>7}{speed['s_per_epoch']:>9.3f}{speed['triples_per_s']:>11,.0f}"
            f"{ratio_text:>7}{mean_sd(metric_values(runs, evaluator, 'mrr')):>16}"
            f"{mean_sd(metric_values(runs, evaluator, 'hits@10')):>16}"
        )
    ours_mrr, their_mrr = metric_values(ours, "graphrec", "mrr"), metric_values(theirs, "pykeen", "mrr")
    print(f"test MRR per seed: graphrec {[round(m, 4) for m in ours_mrr]}, PyKEEN {[round(m, 4) for m in their_mrr]}")
    gap = statistics.mean(ours_mrr) / statistics.mean(their_mrr) - 1
    print(f"ours/PyKEEN throughput {ratio:.2f}x; mean test MRR {gap:+.1%} relative to PyKEEN (PyKEEN's evaluator)")


def parse_args() -> argparse.Namespace:
    """Command-line options; defaults are the settings the comparison is specified at."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kg", type=Path, default=DEFAULT_KG, help="tab-separated head, relation, tail ids")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--num-negatives", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="split seed and first training seed")
    parser.add_argument("--repeats", type=int, default=5, help="training seeds per model, run alternately")
    return parser.parse_args()


def main() -> None:
    """Split the KG, train both models alternately for each seed, print the table."""
    args = parse_args()
    if importlib.util.find_spec("pykeen") is None:
        raise SystemExit("PyKEEN is not installed: pip install pykeen==1.11.1 (an optional bench dependency)")
    torch.set_num_threads(args.threads)
    triples = np.loadtxt(args.kg, dtype=np.int64, ndmin=2)
    n_nodes, n_relations = int(triples[:, [0, 2]].max()) + 1, int(triples[:, 1].max()) + 1
    split = twin_aware_split(triples, seed=args.seed)
    print(
        f"KG {args.kg.name}: {len(triples):,} triples, {n_nodes:,} entities, {n_relations} relations; "
        f"{twin_share(triples):.1%} have a twin; a naive 80/10/10 split would leak "
        f"{naive_leak_share(triples, seed=args.seed):.1%} of held-out triples."
    )
    print(
        f"twin-aware split (seed {args.seed}, train covers every entity): train {len(split.train):,} / "
        f"valid {len(split.valid):,} / test {len(split.test):,}; torch threads {torch.get_num_threads()}; "
        f"dim {args.dim}, negatives {args.num_negatives}, batch {args.batch_size}, Adam lr {args.lr}, "
        f"{args.repeats} seed(s); 1-min load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    base = TransHConfig(
        dim=args.dim, batch_size=args.batch_size, epochs=args.epochs, num_negatives=args.num_negatives, lr=args.lr
    )
    ours: list[Run] = []
    theirs: list[Run] = []
    for repeat in range(args.repeats):
        config = replace(base, seed=args.seed + repeat)
        ours.append(run_ours(split, n_nodes, n_relations, config))
        theirs.append(run_pykeen(split, n_nodes, n_relations, config))
    print_table(ours, theirs, len(split.train), args.epochs)
    print(f"1-min load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
