"""RESULTS.md (mean ± std over seeds, overall and per activity tercile) and a PNG of metrics by tercile."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.splits import TERCILE_NAMES
from training.evaluation.harness import summarise
from training.evaluation.metrics import TOP_K
from training.evaluation.runs import Reuse
from training.tuning import StudyRecord

METRICS = ("auc", "f1", f"recall@{TOP_K}", f"ndcg@{TOP_K}")
LABELS = {"auc": "AUC", "f1": "F1", f"recall@{TOP_K}": f"Recall@{TOP_K}", f"ndcg@{TOP_K}": f"NDCG@{TOP_K}"}
PLOT_SUFFIX = "by_tercile"  # RESULTS.md's plot: RESULTS.by_tercile.png, so reports sharing a folder keep their own
PERSONAL = {  # diagnostics columns of the personalisation table (training.evaluation.diagnostics)
    "diag_personal/item_share": "item-effect share",
    "diag_personal/top20_jaccard": "top-20 Jaccard",
    "diag_personal/coverage": "top-20 coverage",
}

STAGES = {  # diagnostics of models with knowledge stages (KCAN): do they select? (training.evaluation.diagnostics)
    "diag_attention/layer1/entropy_median": "α entropy (layer 1)",
    "diag_attention/layer2/entropy_median": "α entropy (layer 2)",
    "diag_attention/layer1/max_ratio_median": "max α ÷ uniform",
    "diag_distill/share_cut": "stars cut",
    "diag_distill/mass_kept": "α mass kept",
    "diag_conditioning/sensitivity": "target sensitivity",
    "diag_conditioning/beta_entropy_user": "β entropy (user stars)",
    "diag_conditioning/beta_entropy_item": "β entropy (item stars)",
    "diag_logit/towers_share": "towers' logit share",
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


def budget_text(tuned: Mapping[str, StudyRecord], given: Mapping[str, str] | None = None) -> str:
    """One sentence per tuned (model, regime): the trials it had and the shared study conditions; and the models whose
    config was given as a file (``--config-dir``), by path, so a hand-chosen config is never read as a default."""
    given = given or {}
    if not tuned and not given:
        return "Hyper-parameters: every model's defaults (no tuned config used)."
    parts = []
    if given:
        files = "; ".join(f"{model}: {path}" for model, path in given.items())
        parts.append(f"configs given by file (`--config-dir`, every regime and ablation starts from it) for {files}")
    if tuned:
        studies = "; ".join(
            f"{label}: {r.n_trials} trials (best valid AUC {r.best_valid_auc:.4f}, epochs ≤ {r.epochs}, "
            f"patience {r.patience}, {r.protocol} split, seed {r.seed}"
            + (f"; fields outside its space from {r.base_config}" if r.base_config else "")
            + ("; trial 0 its starting config" if r.first_trial_is_start else "")
            + ")"
            for label, r in tuned.items()
        )
        parts.append(
            "tuned configs (`graphrec tune`: Optuna TPE, validation AUC only, the same epoch cap and patience for "
            "every trial; from `--tuned-dir`, by default training/models/tuned/) for "
            f"{studies}"
        )
    return f"Hyper-parameters: {'; '.join(parts)}; other rows use their defaults."


def _paired_delta(table: pd.DataFrame, variant: pd.DataFrame, column: str) -> pd.Series:
    """Per seed: the variant's ``column`` minus the full model's (same family, regime and seed)."""
    keys = ["family", "regime", "seed"]
    full = table[table["ablation"] == ""].set_index(keys)
    paired = variant.set_index(keys)
    return paired[column] - full.loc[paired.index, column]


def _spread(table: pd.DataFrame, family: str, regime: str, column: str) -> float:
    """The full model's seed-to-seed std of ``column``."""
    full = table[(table["ablation"] == "") & (table["family"] == family) & (table["regime"] == regime)]
    return float(full[column].std(ddof=0))


def _variants(table: pd.DataFrame, prefix: str) -> list[tuple[tuple[str, str, str], pd.DataFrame]]:
    """The runs of each (family, variant, regime) whose variant name starts with ``prefix`` (``no `` / ``with ``)."""
    if "ablation" not in table:
        return []
    chosen = table[table["ablation"].str.startswith(prefix)]
    return list(chosen.groupby(["family", "ablation", "regime"], sort=False))


def _delta_cell(delta: pd.Series) -> str:
    return f"{delta.mean():+.4f} ± {delta.std(ddof=0):.4f}"


def _groups(table: pd.DataFrame) -> list[str]:
    """The user groups a table has metrics for: all, then each activity tercile with an ``auc/<tercile>`` column."""
    return ["all", *(t for t in TERCILE_NAMES if f"auc/{t}" in table.columns)]


def _paired_group_deltas(table: pd.DataFrame, prefix: str) -> list[tuple[str, str, str, pd.Series, pd.Series, float]]:
    """Per variant (``prefix`` 'no ' or 'with '), regime and user group: the paired per-seed change of test AUC and
    Recall@20 against the full model, and the full model's seed-to-seed AUC spread (std) in that group."""
    found = []
    for (family, variant, regime), group in _variants(table, prefix):
        for users in _groups(table):
            suffix = "" if users == "all" else f"/{users}"
            auc_delta = _paired_delta(table, group, f"auc{suffix}")
            recall_delta = _paired_delta(table, group, f"recall@{TOP_K}{suffix}")
            spread = _spread(table, family, regime, f"auc{suffix}")
            found.append((f"{family} ({regime})", variant, users, auc_delta, recall_delta, spread))
    return found


def ablation_rows(table: pd.DataFrame) -> list[list[str]]:
    """Per ablation (a ``no …`` variant), regime and user group (all, then each activity tercile): the paired per-seed
    change of test AUC and Recall@20 against the full model (mean ± std over seeds), the full model's seed-to-seed AUC
    spread (std) in that group, and whether the ablation is below the full model by more than that spread."""
    return [
        [
            model,
            ablation,
            users,
            _delta_cell(auc),
            _delta_cell(recall),
            f"{spread:.4f}",
            "yes" if auc.mean() < 0 and -auc.mean() > spread else "no",
        ]
        for model, ablation, users, auc, recall, spread in _paired_group_deltas(table, "no ")
    ]


def extension_rows(table: pd.DataFrame) -> list[list[str]]:
    """Per extension (a ``with …`` variant), regime and user group (all, then each activity tercile): the paired
    per-seed change of test AUC and Recall@20 against the full model, the full model's seed-to-seed AUC spread in that
    group, and whether the AUC change is above, below or within it."""
    rows = []
    for model, extension, users, auc, recall, spread in _paired_group_deltas(table, "with "):
        mean = auc.mean()
        verdict = "within" if abs(mean) <= spread else ("above" if mean > 0 else "below")
        rows.append(
            [
                model,
                extension.removeprefix("with "),
                users,
                _delta_cell(auc),
                _delta_cell(recall),
                f"{spread:.4f}",
                verdict,
            ]
        )
    return rows


def dataset_section(
    table: pd.DataFrame,
    protocol: str,
    tuned: Mapping[str, StudyRecord],
    plot_name: str,
    heading: str = "##",
    given: Mapping[str, str] | None = None,
) -> list[str]:
    """The report blocks of one dataset's runs: tuning budget, overall, per-tercile, personalisation and ablation
    tables (mean ± std over seeds; one row per model and regime) and its plot."""
    summary = summarise(table)
    models = list(summary.index)
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
            f"{heading} How personal the rankings are (300 sampled users, training positives excluded)",
            "Item-effect share: the part of each user's score variance that the item alone explains (1 = one list for"
            " everyone); Jaccard: mean overlap of two users' top-20s; coverage: distinct items in all top-20s ÷"
            " catalogue.",
            _markdown_table(["model", *(PERSONAL[c] for c in personal_columns)], personal),
        ]
        if personal_columns
        else []
    )
    stage_columns = [c for c in STAGES if f"{c}_mean" in summary.columns]
    staged = [m for m in models if stage_columns and not np.isnan(summary.at[m, f"{stage_columns[0]}_mean"])]
    stage_section = (
        [
            f"{heading} Do the knowledge stages select?",
            "Median normalised entropy of each node's α (1 = uniform) and largest α ÷ uniform; share of stars that"
            " distillation cuts and the α mass it keeps; share of a refined user representation's variance that the"
            " target item explains (0 = conditional attention ignores the target); normalised entropy of the"
            " conditional attention β over user and item stars (β can select without depending on the target); the"
            " towers' share of the logit's variance (the rest is the centre dot and item bias channels).",
            _markdown_table(
                ["model", *(STAGES[c] for c in stage_columns)],
                [[m] + [_cell(summary, m, c, 3) for c in stage_columns] for m in staged],
            ),
        ]
        if staged
        else []
    )
    ablations = ablation_rows(table)
    ablation_section = (
        [
            f"{heading} Ablations (paired by seed: ablation − full model, test split)",
            "Per user group; spread: the full model's seed-to-seed std of test AUC in that group; *below* says whether"
            " the ablation's mean AUC loss exceeds it.",
            _markdown_table(
                ["model", "ablation", "users", "Δ AUC", f"Δ Recall@{TOP_K}", "spread (AUC std)", "below"], ablations
            ),
        ]
        if ablations
        else []
    )
    extensions = extension_rows(table)
    extension_section = (
        [
            f"{heading} Extensions (paired by seed: model with the part − model without it, test split)",
            "Per user group; spread: the model's seed-to-seed std of test AUC in that group; the verdict says whether"
            " the mean AUC change is above or below it, or within.",
            _markdown_table(
                ["model", "extension", "users", "Δ AUC", f"Δ Recall@{TOP_K}", "spread (AUC std)", "verdict"],
                extensions,
            ),
        ]
        if extensions
        else []
    )
    return [
        budget_text(tuned, given),
        f"{heading} Test metrics, overall",
        _markdown_table(["model", *(LABELS[m] for m in METRICS), "valid AUC", "s/epoch", "best epoch"], overall),
        f"{heading} Test metrics by user-activity tercile (training positives; sparse = lowest third)",
        _markdown_table(["model", "tercile", *(LABELS[m] for m in METRICS)], per_tercile),
        *personal_section,
        *stage_section,
        *ablation_section,
        *extension_section,
        f"![metrics by tercile]({plot_name})",
    ]


def plot_name(report: str | Path, dataset: str | None = None) -> str:
    """The tercile plot's file name, named after its report so two reports in one folder keep their own:
    ``RESULTS.md`` → ``RESULTS.by_tercile.png``, or ``RESULTS.by_tercile.<dataset>.png`` per named dataset."""
    stem = Path(report).stem
    if dataset is None:
        return f"{stem}.{PLOT_SUFFIX}.png"
    slug = "".join(c if c.isalnum() else "-" for c in dataset.lower()).strip("-")
    return f"{stem}.{PLOT_SUFFIX}.{slug}.png"


def wall_text(wall_seconds: float, total_runs: int, reuse: Reuse) -> str:
    """The header's wall time, true under ``--resume``: this invocation's time covers only the runs it made, so the
    reused runs are counted and their recorded run time is given beside it."""
    if not reuse.runs:
        return f"Wall time: {wall_seconds:.0f} s"
    made = total_runs - reuse.runs
    text = (
        f"Wall time: {wall_seconds:.0f} s for the {made} run(s) this invocation made; {reuse.runs} of the "
        f"{total_runs} runs were made by an earlier invocation and reused (`--resume`: same dataset, model, regime, "
        "seed and config)"
    )
    if not reuse.timed:
        return text + ", their run time not recorded (made before runs were timed)"
    text += (
        f", their recorded run times summing to {reuse.seconds:.0f} s (a sum over runs that may have run in parallel"
    )
    if reuse.timed < reuse.runs:
        text += f"; {reuse.runs - reuse.timed} of them made before runs were timed"
    return text + ")"


def _datasets(table: pd.DataFrame) -> list[str | None]:
    """The report's datasets in run order; [None] when the table has no dataset column (one unnamed dataset)."""
    return list(dict.fromkeys(table["dataset"])) if "dataset" in table else [None]


def results_markdown(
    table: pd.DataFrame,
    command: str,
    wall_seconds: float,
    protocol: str = "ctr",
    tuned: Mapping[tuple[str, str], StudyRecord] | None = None,
    reuse: Reuse = Reuse(),
    report: str | Path = "RESULTS.md",
    given: Mapping[str, str] | None = None,
) -> str:
    """The report text: command and wall time, protocol, then per dataset (a ``dataset`` column; one section each)
    its tuning budget and its overall, per-tercile, personalisation and ablation tables (mean ± std over seeds; one
    row per model and regime). ``tuned`` maps (dataset name, row label) to the study of that row's config; ``reuse``
    counts the runs read back under ``--resume``; the plots linked are named after ``report``; ``given`` maps a model
    name to the config file it ran with (``--config-dir``)."""
    models = set(table["model"])
    seeds = sorted(table["seed"].unique())
    floor = (
        " `popularity` scores every user's items by log(1 + training positives of the item) and learns nothing: the"
        " floor every model should clear (its s/epoch is n/a: it trains no epoch)."
        if "popularity" in models
        else ""
    )
    blocks = [
        "# Results",
        f"Command: `{command}`  \n{wall_text(wall_seconds, len(table), reuse)}; seeds: {', '.join(map(str, seeds))} "
        f"({PROTOCOL_TEXT[protocol]}; epochs chosen by validation AUC only; test touched once per run). "
        "Rows are model (training regime: bce = labelled rows, bpr = sampled negatives). "
        f"Recall/NDCG@{TOP_K}: {TOPK_USERS_TEXT[protocol]}, all items except their training positives. "
        "Seconds per epoch: median over epochs, training part only, on a shared CPU "
        f"(noisy).{floor}",
    ]
    for dataset in _datasets(table):
        studies = {label: r for (name, label), r in (tuned or {}).items() if dataset in (None, name)}
        if dataset is None:
            blocks += dataset_section(table, protocol, studies, plot_name(report), given=given)
            continue
        blocks += [f"## Dataset: {dataset}"]
        blocks += dataset_section(
            table[table["dataset"] == dataset], protocol, studies, plot_name(report, dataset), "###", given
        )
    return "\n\n".join(blocks) + "\n"


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
    tuned: Mapping[tuple[str, str], StudyRecord] | None = None,
    reuse: Reuse = Reuse(),
    given: Mapping[str, str] | None = None,
) -> tuple[Path, list[Path]]:
    """Write ``out`` (markdown) and the tercile plot of each dataset next to it; return the report and the plots."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(results_markdown(table, command, wall_seconds, protocol, tuned, reuse, out.name, given))
    plots = []
    for dataset in _datasets(table):
        rows = table if dataset is None else table[table["dataset"] == dataset]
        plots.append(out.with_name(plot_name(out.name, dataset)))
        plot_by_tercile(rows, plots[-1])
    return out, plots
