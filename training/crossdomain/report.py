"""The cross-domain report: markdown tables (mean ± std over seeds) per kept share and target domain, per user group,
and a figure of each metric against the kept share of target-domain training rows."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.crossdomain.evaluate import SAMPLED_METRICS
from training.crossdomain.experiment import GROUPS, RunResult

FULL_METRICS = ("Recall@20", "NDCG@20")
GROUP_METRICS = ("AUC", "MRR", "HR@10")


@dataclass(frozen=True)
class Sweep:
    """Every run of one report: results by kept share, and what made them."""

    runs: dict[float, list[RunResult]]
    command: str
    seconds: float
    notes: tuple[str, ...]
    n_negatives: int


def _cell(values: list[float]) -> str:
    if not values or all(np.isnan(values)):
        return "–"
    mean = float(np.nanmean(values))
    return f"{mean:.4f}" if len(values) == 1 else f"{mean:.4f} ± {float(np.nanstd(values)):.4f}"


def _by_model(runs: list[RunResult]) -> dict[str, list[RunResult]]:
    grouped: dict[str, list[RunResult]] = defaultdict(list)
    for run in runs:
        grouped[run.model].append(run)
    return grouped


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _domain_tables(runs: list[RunResult], domain: str) -> list[str]:
    overall, groups = [], []
    for model, fits in _by_model(runs).items():
        results = [fit.domains[domain] for fit in fits]
        cells = [_cell([r.test[m] for r in results]) for m in SAMPLED_METRICS]
        cells += [_cell([r.full[m] for r in results]) for m in FULL_METRICS]
        epochs = "/".join(str(r.best_epoch) for r in results)
        per_epoch = np.mean([fit.seconds_per_epoch for fit in fits])
        overall.append([model, *cells, epochs, f"{per_epoch:.1f}"])
        for group in GROUPS:
            rows = results[0].group_rows.get(group, 0)
            if rows == 0:  # e.g. the Amazon release, where every test user is cold in the target
                continue
            groups.append(
                [model, group, str(rows), *(_cell([r.groups[group][m] for r in results]) for m in GROUP_METRICS)]
            )
    header = ["model", *SAMPLED_METRICS, *FULL_METRICS, "best epoch", "s/epoch"]
    lines = _table(header, overall) + ["", f"By user group (target-domain training rows: {_group_legend()}):", ""]
    return lines + _table(["model", "group", "test rows", *GROUP_METRICS], groups)


def _group_legend() -> str:
    return ", ".join(
        f"{name} {low}" if low == high else f"{name} {low}–{high or '…'}" for name, (low, high) in GROUPS.items()
    )


def markdown(sweep: Sweep, title: str, figure: Path | None) -> str:
    """The whole report as markdown."""
    lines = [f"# {title}", "", f"Command: `{sweep.command}`", "", f"Wall time: {sweep.seconds / 60:.1f} min.", ""]
    lines += [f"- {note}" for note in sweep.notes]
    lines += [
        f"- Sampled metrics: each held-out row ranked against {sweep.n_negatives} negatives drawn from the domain's "
        "training items, none of them an item of the user in that domain; test at the epoch of best validation MRR. "
        "Recall/NDCG@20: every item of the domain but the user's training items. Mean ± std over seeds.",
        "",
    ]
    for keep, runs in sweep.runs.items():
        for domain in runs[0].domains:
            lines += [f"## Target {domain}, {keep:.0%} of target training rows kept", ""]
            lines += _domain_tables(runs, domain) + [""]
    if figure is not None:
        lines += [f"![metrics vs kept share]({figure.name})", ""]
    return "\n".join(lines)


def plot(sweep: Sweep, path: Path) -> None:
    """One panel per user group (and all rows): test AUC against the kept share, one line per model, mean over seeds."""
    from matplotlib.figure import Figure  # here: only the report command draws

    keeps = sorted(sweep.runs)
    domain = next(iter(sweep.runs[keeps[0]][0].domains))
    panels = ["all", *GROUPS]
    figure = Figure(figsize=(4 * len(panels), 3.6), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    models = list(_by_model(sweep.runs[keeps[0]]))
    for axis, panel in zip(axes, panels, strict=True):
        for model in models:
            values = []
            for keep in keeps:
                fits = _by_model(sweep.runs[keep])[model]
                metrics = [f.domains[domain].test if panel == "all" else f.domains[domain].groups[panel] for f in fits]
                values.append(np.nanmean([m["AUC"] for m in metrics]))
            axis.plot(keeps, values, marker="o", label=model)
        axis.set_title(f"{domain}: {panel} users" if panel != "all" else f"{domain}: all test rows")
        axis.set_xlabel("share of target training rows kept")
        axis.set_ylabel("test AUC (sampled)")
        axis.set_xscale("log")
        axis.set_xticks(keeps, [f"{k:g}" for k in keeps])
    axes[0].legend(fontsize=7)
    figure.savefig(path, dpi=110)
