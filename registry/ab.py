"""The champion-vs-challenger A/B report from the request log, and its record on both versions' MLflow runs.

An impression is a (request, item) pair with an ``impression`` or a ``click`` event (a click implies it was shown);
its score is the one the item was served with. Per arm (the alias that answered, with its version), overall and per
user-activity tercile: impressions, clicks, CTR with its Wilson interval, and the AUC of served scores against clicks
(scikit-learn's ``roc_auc_score``) with a bootstrap interval. Terciles are training's (``activity_terciles`` of the
training positives of the champion run's split, as the version's published ``activity_tercile`` is); users outside the
dataset have none. Requests whose arm a client forced with the variant header are left out (not randomised), and an
arm whose version changed within the window counts its latest version's requests only (choose ``since`` to match).

The verdict compares the arms' CTR with a two-proportion z-test: the winner and the confidence (1 - two-sided p), or,
below ``confidence``, how many more impressions the observed difference needs for 80% power.
"""

from __future__ import annotations

import json
import math
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.entities import Metric
from scipy.stats import binomtest, norm
from sklearn.metrics import roc_auc_score

from graphrec.settings import Settings
from serving.contract import CHALLENGER, CHAMPION
from serving.requestlog import CLICK, HEADER, SqlSink
from training.data.load import load_dataset
from training.data.splits import PROTOCOLS, TERCILE_NAMES, activity_terciles, make_split

ALL = "all"
GROUPS = (ALL, *TERCILE_NAMES)
ARMS = (CHAMPION, CHALLENGER)
POWER = 0.8
UNDETECTABLE_LIFT = 0.1  # relative CTR difference sized for when the arms' CTRs are equal so far
AB_TAG = "graphrec.ab.verdict"
DPI = 110


@dataclass(frozen=True)
class ArmStats:
    """One arm's numbers in one user group (NaN where undefined: no impressions, or clicks of one class only)."""

    arm: str
    version: str
    requests: int
    users: int
    impressions: int
    clicks: int
    ctr: float
    ctr_low: float
    ctr_high: float
    auc: float
    auc_low: float
    auc_high: float


@dataclass(frozen=True)
class AbReport:
    """Per group (all, sparse, medium, active) and arm, the stats; the verdict and how it was reached."""

    since: float | None
    confidence_level: float
    groups: dict[str, dict[str, ArmStats]]
    verdict: str
    winner: str | None
    confidence: float | None
    more_impressions: int | None
    forced_left_out: int
    tercile_source: str
    versions: dict[str, str] = field(default_factory=dict)  # arm -> version

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return asdict(self)


def impressions(requests: pd.DataFrame, feedback: pd.DataFrame) -> pd.DataFrame:
    """One row per shown (request, item): arm, version, user, the served score and whether it was clicked."""
    if requests.empty or feedback.empty:
        return pd.DataFrame(columns=["request_id", "item_id", "arm", "model_version", "user_id", "score", "clicked"])
    served = requests[["request_id", "arm", "model_version", "user_id", "item_ids", "scores"]].explode(
        ["item_ids", "scores"]
    )
    served = served.rename(columns={"item_ids": "item_id", "scores": "score"}).astype(
        {"item_id": np.int64, "score": np.float64}
    )
    events = feedback.assign(clicked=feedback["event"] == CLICK).groupby(["request_id", "item_id"], as_index=False)
    shown = events["clicked"].any()
    return served.merge(shown, on=["request_id", "item_id"], how="inner")


def wilson(clicks: int, shown: int, level: float) -> tuple[float, float]:
    """Wilson score interval of a CTR (scipy's binomtest)."""
    if shown == 0:
        return math.nan, math.nan
    interval = binomtest(clicks, shown).proportion_ci(confidence_level=level, method="wilson")
    return float(interval.low), float(interval.high)


def bootstrap_auc(
    clicked: np.ndarray, scores: np.ndarray, level: float, resamples: int, seed: int
) -> tuple[float, float, float]:
    """AUC and its percentile bootstrap interval. Resampled within each label (stratified): scipy.stats.bootstrap
    resamples rows without strata, and a resample without a click leaves the AUC undefined."""
    positives, negatives = scores[clicked], scores[~clicked]
    if len(positives) == 0 or len(negatives) == 0:
        return math.nan, math.nan, math.nan
    labels = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    auc = float(roc_auc_score(labels, np.r_[positives, negatives]))
    rng = np.random.default_rng(seed)
    draws = [
        roc_auc_score(
            labels,
            np.r_[rng.choice(positives, len(positives)), rng.choice(negatives, len(negatives))],
        )
        for _ in range(resamples)
    ]
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return auc, float(low), float(high)


def arm_stats(rows: pd.DataFrame, arm: str, version: str, level: float, resamples: int, seed: int) -> ArmStats:
    """The stats of one arm's impression rows."""
    shown, clicks = len(rows), int(rows["clicked"].sum())
    low, high = wilson(clicks, shown, level)
    auc = bootstrap_auc(rows["clicked"].to_numpy(bool), rows["score"].to_numpy(float), level, resamples, seed)
    return ArmStats(
        arm=arm,
        version=version,
        requests=int(rows["request_id"].nunique()),
        users=int(rows["user_id"].nunique()),
        impressions=shown,
        clicks=clicks,
        ctr=clicks / shown if shown else math.nan,
        ctr_low=low,
        ctr_high=high,
        auc=auc[0],
        auc_low=auc[1],
        auc_high=auc[2],
    )


def user_terciles(settings: Settings, champion_params: dict[str, str]) -> tuple[np.ndarray, str]:
    """Every dataset user's activity tercile from the training positives of the champion run's split (its ``seed``
    and ``protocol`` params; the settings' seed and ``ctr`` when it logged none), and a line saying so."""
    dataset = load_dataset(settings)
    seed = int(champion_params.get("seed", settings.seed))
    protocol = champion_params.get("protocol", "ctr")
    if protocol not in PROTOCOLS:
        protocol = "ctr"
    positives = make_split(dataset.interactions, seed, protocol).train_positives()  # type: ignore[arg-type]
    source = f"training positives of {dataset.name}, split seed {seed}, protocol {protocol}"
    return activity_terciles(positives, dataset.n_users), source


def verdict(
    champion: ArmStats | None, challenger: ArmStats | None, level: float
) -> tuple[str, str | None, float | None, int | None]:
    """(line, winner arm, confidence, more impressions needed) from a two-proportion z-test on CTR."""
    if champion is None or challenger is None or not champion.impressions or not challenger.impressions:
        missing = CHALLENGER if champion is not None and champion.impressions else CHAMPION
        return f"not enough data: no impressions on the {missing} arm yet", None, None, None
    n1, n2 = champion.impressions, challenger.impressions
    p1, p2 = champion.ctr, challenger.ctr
    pooled = (champion.clicks + challenger.clicks) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    confidence = float(1 - 2 * norm.sf(abs(p2 - p1) / spread)) if spread > 0 else 0.0
    if confidence >= level and p1 != p2:
        winner, loser = (challenger, champion) if p2 > p1 else (champion, challenger)
        lift = (winner.ctr - loser.ctr) / loser.ctr if loser.ctr > 0 else math.inf
        line = (
            f"{winner.arm} v{winner.version} wins: CTR {winner.ctr:.4f} vs {loser.ctr:.4f} ({lift:+.0%}), "
            f"confidence {_percent(confidence)} (two-proportion z-test)"
        )
        return line, winner.arm, confidence, None
    base = max(pooled, 1 / (n1 + n2))  # no clicks yet: size for a CTR of one click in what was shown
    difference = abs(p2 - p1) or UNDETECTABLE_LIFT * base
    variance = p1 * (1 - p1) + p2 * (1 - p2) or 2 * base * (1 - base)
    z = norm.ppf(1 - (1 - level) / 2) + norm.ppf(POWER)
    per_arm = z**2 * variance / difference**2
    more = max(int(math.ceil(2 * per_arm)) - (n1 + n2), 1)
    line = (
        f"not enough data: need about {more:,} more impressions (CTR {p1:.4f} champion vs {p2:.4f} challenger, "
        f"confidence {_percent(confidence)} < {level:.0%})"
    )
    return line, None, confidence, more


def _percent(confidence: float) -> str:
    return ">99.9%" if confidence > 0.999 else f"{confidence:.1%}"


def ab_report(
    settings: Settings,
    since: float | None = None,
    *,
    level: float = 0.95,
    resamples: int = 500,
    seed: int = 0,
    include_forced: bool = False,
) -> AbReport:
    """The A/B report of the requests logged since ``since`` (unix seconds; None: all) and their feedback."""
    sink = SqlSink(settings.request_log_uri, create=False)
    requests = sink.requests(since)
    forced = requests["assignment"] == HEADER if not requests.empty else pd.Series(dtype=bool)
    left_out = 0 if include_forced else int(forced.sum())
    if not include_forced and left_out:
        requests = requests[~forced]
    versions = {arm: str(group["model_version"].iloc[-1]) for arm, group in requests.groupby("arm")}
    if versions:  # an arm whose version changed in the window counts its latest version only
        requests = requests[requests["model_version"] == requests["arm"].map(versions)]
    rows = impressions(requests, sink.feedback(since))
    params = _run_params(settings, versions.get(CHAMPION))
    terciles, source = user_terciles(settings, params)
    users = rows["user_id"].to_numpy(np.int64)
    known = (users >= 0) & (users < len(terciles))
    rows = rows.assign(tercile=np.where(known, terciles[np.where(known, users, 0)], -1))
    groups: dict[str, dict[str, ArmStats]] = {}
    for name in GROUPS:
        chosen = rows if name == ALL else rows[rows["tercile"] == TERCILE_NAMES.index(name)]
        groups[name] = {
            arm: arm_stats(part, arm, versions.get(arm, "?"), level, resamples, seed)
            for arm, part in chosen.groupby("arm")
            if arm in ARMS
        }
    line, winner, confidence, more = verdict(groups[ALL].get(CHAMPION), groups[ALL].get(CHALLENGER), level)
    if rows.empty:
        line = "not enough data: no impressions logged" + (" since then" if since is not None else " yet")
    return AbReport(since, level, groups, line, winner, confidence, more, left_out, source, versions)


def _run_params(settings: Settings, version: str | None) -> dict[str, str]:
    """The params of the run that produced ``version`` of the registered model (empty when unknown)."""
    if version is None:
        return {}
    client = MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)
    run_id = client.get_model_version(settings.registered_model_name, version).run_id
    return dict(client.get_run(run_id).data.params) if run_id else {}


def plot_png(report: AbReport, path: Path) -> Path:
    """CTR and AUC with their intervals per tercile (and overall), one series per arm."""
    figure = Figure(figsize=(8, 3.5))
    axes = figure.subplots(1, 2)
    x = np.arange(len(GROUPS))
    for offset, arm in zip((-0.08, 0.08), ARMS, strict=True):
        for axis, metric in zip(axes, ("ctr", "auc"), strict=True):
            stats = [report.groups[g].get(arm) for g in GROUPS]
            values = np.array([getattr(s, metric) if s else np.nan for s in stats])
            low = np.array([getattr(s, f"{metric}_low") if s else np.nan for s in stats])
            high = np.array([getattr(s, f"{metric}_high") if s else np.nan for s in stats])
            errors = np.nan_to_num(np.vstack([values - low, high - values]))
            label = f"{arm} v{report.versions.get(arm, '?')}"
            axis.errorbar(x + offset, values, yerr=errors, marker="o", linestyle="", capsize=3, label=label)
    for axis, title in zip(axes, ("CTR (Wilson interval)", "AUC of served scores (bootstrap)"), strict=True):
        axis.set_xticks(x, GROUPS)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("user activity tercile")
    axes[0].legend(fontsize=8)
    figure.suptitle(textwrap.fill(report.verdict, 110), fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return path


def metrics_of(stats: ArmStats, group: str) -> dict[str, float]:
    """MLflow metric names and values of one arm in one group (``ab_ctr``, ``ab_ctr/sparse``...; NaNs left out)."""
    suffix = "" if group == ALL else f"/{group}"
    values = {
        "impressions": stats.impressions,
        "clicks": stats.clicks,
        "ctr": stats.ctr,
        "ctr_low": stats.ctr_low,
        "ctr_high": stats.ctr_high,
        "auc": stats.auc,
        "auc_low": stats.auc_low,
        "auc_high": stats.auc_high,
    }
    return {f"ab_{name}{suffix}": float(v) for name, v in values.items() if not math.isnan(float(v))}


def log_to_mlflow(settings: Settings, report: AbReport, plot: Path | None) -> list[str]:
    """Log each arm's numbers (every group) to the run of its version, with the verdict as a tag and the report and
    plot as artefacts under ``ab/``; step = the impressions of both arms, so repeated reports form a curve. Returns
    the run ids written."""
    client = MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)
    step = sum(s.impressions for s in report.groups[ALL].values())
    now = int(time.time() * 1000)
    written = []
    with tempfile.TemporaryDirectory() as scratch:
        summary = Path(scratch) / "ab_report.json"
        summary.write_text(json.dumps(report.to_json(), indent=2, default=str))
        for arm, version in report.versions.items():
            if arm not in ARMS:
                continue
            run_id = client.get_model_version(settings.registered_model_name, version).run_id
            metrics = {
                key: value
                for group in GROUPS
                if arm in report.groups[group]
                for key, value in metrics_of(report.groups[group][arm], group).items()
            }
            client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])
            client.set_tag(run_id, AB_TAG, report.verdict[:5000])
            client.log_artifact(run_id, str(summary), "ab")
            if plot is not None:
                client.log_artifact(run_id, str(plot), "ab")
            written.append(run_id)
    return written
