"""RESULTS.md (mean ± std over seeds, overall and per activity tercile) and a PNG of metrics by tercile."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.splits import TERCILE_NAMES
from training.evaluation.harness import summarise
from training.evaluation.metrics import TOP_K
from training.tuning import StudyRecord

METRICS = ("auc", "f1", f"recall@{TOP_K}", f"ndcg@{TOP_K}")
LABELS = {"auc": "AUC", "f1": "F1", f"recall@{TOP_K}": f"Recall@{TOP_K}", f"ndcg@{TOP_K}": f"NDCG@{TOP_K}"}
PLOT_NAME = "results_by_tercile.png"
PERSONAL = {  # diagnostics columns of the personalisation table (training.evaluation.diagnostics)
    "diag_personal/item_share": "item-effect share",
    "diag_personal/top20_jaccard": "top-20 Jaccard",
    "diag_personal/coverage": "top-20 coverage",
}


def _cell(summary: pd.DataFrame, model: str, column: str, digits: int = 4) -> str:
    mean, std = summary.at[model, f"{column}_mean"], summary.at[model, f"{column}_std"]
    return "n/a" if np.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


PROTOCOL_TEXT = {
    "ctr": "each seed: its own 6:2:2 CTR split of labelled rows and initialisation",
    "topk": "each seed: its own per-user 8:1:1 hold-out of each user's positives and negatives (top-K protocol) "
    "and initialisation",
}
TOPK_USERS_TEXT = {
    "ctr": "up to 300 sampled test users",
    "topk": "every test user with a held-out positive",
}


def budget_text(tuned: Mapping[str, StudyRecord]) -> str:
    """One sentence per tuned (model, regime): the trials it had and the shared study conditions."""
    if not tuned:
        return "Hyper-parameters: every model's defaults (no tuned config used)."
    studies = "; ".join(
        f"{label}: {r.n_trials} trials (best valid AUC {r.best_valid_auc:.4f}, epochs ≤ {r.epochs}, "
        f"patience {r.patience}, {r.protocol} split, seed {r.seed})"
        for label, r in tuned.items()
    )
    return (
        "Hyper-parameters: tuned configs from training/models/tuned/ (`graphrec tune`: Optuna TPE, validation AUC "
        f"only, the same epoch cap and patience for every trial) for {studies}; other rows use their defaults."
    )


def results_markdown(
    table: pd.DataFrame,
    command: str,
    wall_seconds: float,
    protocol: str = "ctr",
    tuned: Mapping[str, StudyRecord] | None = None,
) -> str:
    """The report text: command and wall time, protocol and tuning budget, an overall table and a per-tercile table
    (mean ± std over seeds; one row per model and regime). ``tuned`` maps a row label to the study of its config."""
    summary = summarise(table)
    models = list(summary.index)
    seeds = sorted(table["seed"].unique())
    floor = (
        " `popularity` scores every user's items by log(1 + training positives of the item) and learns nothing: the"
        " floor every model should clear (its s/epoch is n/a: it trains no epoch)."
        if "popularity" in models
        else ""
    )
    overall = [
        [m]
        + [_cell(summary, m, metric) for metric in METRICS]
        + [
            _cell(summary, m, "valid_auc"),
            _cell(summary, m, "seconds_per_epoch", 2),
            _cell(summary, m, "best_epoch", 1),
        ]
        for m in models
    ]
    per_tercile = [
        [m, tercile] + [_cell(summary, m, f"{metric}/{tercile}") for metric in METRICS]
        for m in models
        for tercile in TERCILE_NAMES
    ]
    personal_columns = [c for c in PERSONAL if f"{c}_mean" in summary.columns]
    personal = [[m] + [_cell(summary, m, c, 3) for c in personal_columns] for m in models]
    personal_section = (
        [
            "## How personal the rankings are (300 sampled users, training positives excluded)",
            "Item-effect share: the part of each user's score variance that the item alone explains (1 = one list for"
            " everyone); Jaccard: mean overlap of two users' top-20s; coverage: distinct items in all top-20s ÷"
            " catalogue.",
            _markdown_table(["model", *(PERSONAL[c] for c in personal_columns)], personal),
        ]
        if personal_columns
        else []
    )
    return (
        "\n\n".join(
            [
                "# Results",
                f"Command: `{command}`  \nWall time: {wall_seconds:.0f} s; seeds: {', '.join(map(str, seeds))} "
                f"({PROTOCOL_TEXT[protocol]}; epochs chosen by validation AUC only; test touched once per run). "
                "Rows are model (training regime: bce = labelled rows, bpr = sampled negatives). "
                f"Recall/NDCG@{TOP_K}: {TOPK_USERS_TEXT[protocol]}, all items except their training positives. "
                "Seconds per epoch: median over epochs, training part only, on a shared CPU "
                f"(noisy).{floor}",
                budget_text(tuned or {}),
                "## Test metrics, overall",
                _markdown_table(
                    ["model", *(LABELS[m] for m in METRICS), "valid AUC", "s/epoch", "best epoch"], overall
                ),
                "## Test metrics by user-activity tercile (training positives; sparse = lowest third)",
                _markdown_table(["model", "tercile", *(LABELS[m] for m in METRICS)], per_tercile),
                *personal_section,
                f"![metrics by tercile]({PLOT_NAME})",
            ]
        )
        + "\n"
    )


def plot_by_tercile(table: pd.DataFrame, path: Path) -> None:
    """One panel per metric: mean ± std over seeds by tercile, one line per model (a matplotlib Figure drawn
    without pyplot, so no backend is chosen)."""
    from matplotlib.figure import Figure

    summary = summarise(table)
    figure = Figure(figsize=(4.2 * len(METRICS), 3.6))
    axes = figure.subplots(1, len(METRICS))
    x = np.arange(len(TERCILE_NAMES))
    for axis, metric in zip(axes, METRICS, strict=True):
        for model in summary.index:
            means = [summary.at[model, f"{metric}/{t}_mean"] for t in TERCILE_NAMES]
            stds = [summary.at[model, f"{metric}/{t}_std"] for t in TERCILE_NAMES]
            axis.errorbar(x, means, yerr=stds, marker="o", capsize=3, label=model)
        axis.set_xticks(x, TERCILE_NAMES)
        axis.set_title(LABELS[metric])
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def write_report(
    table: pd.DataFrame,
    command: str,
    wall_seconds: float,
    out: Path,
    protocol: str = "ctr",
    tuned: Mapping[str, StudyRecord] | None = None,
) -> tuple[Path, Path]:
    """Write ``out`` (markdown) and ``results_by_tercile.png`` next to it; return both paths."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(results_markdown(table, command, wall_seconds, protocol, tuned))
    plot = out.with_name(PLOT_NAME)
    plot_by_tercile(table, plot)
    return out, plot
