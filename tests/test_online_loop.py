"""The online loop end to end: two versions served 50/50, simulated traffic with clicks from the held-out truth, and
``graphrec monitor ab`` picking the planted better challenger (per arm, per tercile, with intervals and a verdict)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from mlflow import MlflowClient
from typer.testing import CliRunner

from cli.main import app as cli
from cli.monitor import parse_since
from graphrec.settings import Settings
from registry.ab import ArmStats, verdict
from serving.app import create_app
from serving.requestlog import SqlSink
from tests.support.datasets import synthetic_dataset
from tests.support.online import live_server, publish_ab_world
from training.data.dataset import write_dataset
from training.simulation import ClickTruth

runner = CliRunner()
REQUESTS = 300


@pytest.fixture(scope="module")
def ab_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, str, str]:
    """Settings (dataset folder, 50/50 split, request log on) with the random champion and the planted challenger."""
    root = tmp_path_factory.mktemp("online-loop")
    dataset = synthetic_dataset(n_users=60, n_items=40, positives=(2, 8))
    write_dataset(dataset, root / "data")
    settings = Settings(work_dir=root / "work", dataset=str(root / "data"), serving_challenger_share=0.5)
    champion, challenger = publish_ab_world(settings, dataset)
    return settings, champion.version, challenger.version


def graphrec(settings: Settings, *args: str) -> str:
    result = runner.invoke(
        cli, ["--work-dir", str(settings.work_dir), "--dataset", settings.dataset, *args], env={"COLUMNS": "80"}
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def test_truth_clicks_held_out_positives_only() -> None:
    dataset = synthetic_dataset()
    truth = ClickTruth.held_out(dataset, seed=3, hit=1.0, miss=0.0)
    user = int(truth.keys[0] // dataset.n_items)
    positives = truth.positives_of(user)
    assert len(positives) and truth.probability(user, positives).tolist() == [1.0] * len(positives)
    assert truth.probability(user, np.setdiff1d(np.arange(dataset.n_items), positives)).max() == 0.0
    candidates = truth.candidates(user, 10, np.random.default_rng(0))
    assert len(set(candidates.tolist())) == 10 and len(set(positives) & set(candidates)) == min(len(positives), 5)
    with pytest.raises(ValueError, match="miss <= hit"):
        ClickTruth.held_out(dataset, seed=3, hit=0.1, miss=0.5)


def test_simulated_ab_picks_the_planted_challenger(ab_world: tuple[Settings, str, str]) -> None:
    settings, champion, challenger = ab_world
    served = create_app(settings, poll=False)
    with live_server(served) as url:
        out = graphrec(settings, "simulate", "traffic", "--requests", str(REQUESTS), "--url", url, "--seed", "1")
        assert f"{REQUESTS} requests, 0 failed" in out
        assert served.state.request_log.flush(30)

    text = graphrec(settings, "monitor", "ab", "--resamples", "200", "--no-mlflow")
    for group in ("all", "sparse", "medium", "active"):
        assert f"users: {group}" in text
    assert f"challenger v{challenger}" in text and f"champion v{champion}" in text
    assert f"verdict: challenger v{challenger} wins" in text
    assert max(len(line) for line in text.splitlines()) <= 80

    report = json.loads(graphrec(settings, "monitor", "ab", "--resamples", "200", "--json"))
    overall = report["groups"]["all"]
    assert report["winner"] == "challenger" and report["confidence"] >= 0.95
    requests = {arm: overall[arm]["requests"] for arm in ("champion", "challenger")}
    assert sum(requests.values()) == REQUESTS and min(requests.values()) > REQUESTS / 4  # both arms served
    assert overall["challenger"]["ctr"] > overall["champion"]["ctr"]
    stats = overall["challenger"]
    assert (
        stats["ctr_low"] <= stats["ctr"] <= stats["ctr_high"] and stats["auc_low"] <= stats["auc"] <= stats["auc_high"]
    )
    for group in ("sparse", "medium", "active"):
        assert set(report["groups"][group]) == {"champion", "challenger"}
    assert Path(report["plot"]).stat().st_size > 0

    client = MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)
    for version in (champion, challenger):
        run = client.get_run(client.get_model_version(settings.registered_model_name, version).run_id)
        assert run.data.tags["graphrec.ab.verdict"].startswith(f"challenger v{challenger} wins")
        assert "ab_ctr/sparse" in run.data.metrics and "ab_auc" in run.data.metrics
        assert {a.path for a in client.list_artifacts(run.info.run_id, "ab")} == {"ab/ab_report.json", "ab/ab.png"}


def test_report_without_traffic_says_not_enough_data(tmp_path: Path) -> None:
    dataset = synthetic_dataset()
    write_dataset(dataset, tmp_path / "data")
    settings = Settings(work_dir=tmp_path / "work", dataset=str(tmp_path / "data"))
    missing = runner.invoke(cli, ["--work-dir", str(settings.work_dir), "monitor", "ab"])
    assert missing.exit_code == 1 and "no such file or folder" in missing.stderr and "requests.db" in missing.stderr
    assert not (settings.work_dir / "requests.db").exists()
    SqlSink(settings.request_log_uri)  # an empty log, as a service with no traffic leaves it
    text = graphrec(settings, "monitor", "ab", "--no-mlflow")
    assert "verdict: not enough data: no impressions logged yet" in text


def _arm(arm: str, shown: int, clicks: int) -> ArmStats:
    nan = float("nan")
    return ArmStats(arm, "1", shown, shown, shown, clicks, clicks / shown, nan, nan, nan, nan, nan)


def test_verdict_names_the_winner_or_the_impressions_still_needed() -> None:
    line, winner, confidence, more = verdict(_arm("champion", 5000, 250), _arm("challenger", 5000, 400), 0.95)
    assert winner == "challenger" and confidence > 0.999 and more is None
    assert line.startswith("challenger v1 wins: CTR 0.0800 vs 0.0500 (+60%), confidence >99.9%")
    line, winner, confidence, more = verdict(_arm("champion", 500, 25), _arm("challenger", 500, 30), 0.95)
    assert winner is None and confidence < 0.95
    # 0.05 vs 0.06 at 95% and 80% power: 7.85 * (0.0475 + 0.0564) / 0.01**2 = 8,155 per arm, 16,310 in all
    assert 15_000 < more < 17_500 and line.startswith(f"not enough data: need about {more:,} more impressions")
    line, *_ = verdict(_arm("champion", 100, 5), None, 0.95)
    assert line == "not enough data: no impressions on the challenger arm yet"


def test_since_takes_durations_and_iso_times() -> None:
    assert parse_since("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_since("2026-01-01T00:00") == 1_767_225_600
    assert parse_since("2026-01-01T01:00+01:00") == 1_767_225_600
    with pytest.raises(typer.BadParameter, match="give a duration such as 30m"):
        parse_since("yesterday")
