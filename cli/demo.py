"""``graphrec demo``: the main job end to end on the embedded defaults, one stage after another, each timed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.rule import Rule
from rich.table import Table

from cli.context import console, reported_errors, settings_of
from cli.output import text_column
from graphrec.settings import Settings

DEMO_SYNTH_USERS = 5_000
DEMO_MODEL = "kcan"
DEMO_EPOCHS = 8
DEMO_TRANSH_EPOCHS = 30
DEMO_AB_MODEL = "bpr_mf"  # the challenger: trains in seconds
DEMO_AB_EPOCHS = 5
DEMO_AB_REQUESTS = 400
DEMO_AB_RESAMPLES = 200


def _stage(title: str, action: Callable[[], object]) -> object:
    console.print(Rule(f"[bold]{title}"))
    started = time.perf_counter()
    result = action()
    console.print(f"[dim]{title.split(maxsplit=1)[0]} done in {time.perf_counter() - started:.1f}s[/dim]")
    return result


def resolve_demo_data(settings: Settings) -> Settings:
    """Real Last.FM data when present, else a seeded synthetic dataset generated under the work dir."""
    from training.data.lastfm import missing_lastfm_files
    from training.data.load import LASTFM

    if settings.dataset != LASTFM or not missing_lastfm_files(settings.data_dir):
        return settings
    from training.synth.generator import SynthConfig, generate_dataset

    folder = settings.work_dir / "synthetic-demo"
    console.print(f"No Last.FM data under {settings.data_dir}: generating {DEMO_SYNTH_USERS:,} synthetic users.")
    generate_dataset(SynthConfig(n_users=DEMO_SYNTH_USERS, seed=settings.seed), folder)
    return settings.model_copy(update={"dataset": str(folder)})


def _summarise(settings: Settings) -> None:
    from cli.data import summary_tables
    from training.summary import dataset_summary

    for table in summary_tables(dataset_summary(settings)):
        console.print(table)


def _graphs(settings: Settings) -> None:
    from training.graphs.build import build_and_save_graphs

    folder, built = build_and_save_graphs(settings)
    for name, graph in built.items():
        console.print(f"{name}: {graph.num_nodes():,} nodes, {graph.num_edges():,} edges -> {folder}")


def _features(settings: Settings) -> None:
    from dataclasses import replace

    from training.features.jobs import FeatureJobConfig, build_features
    from training.features.transh_job import FEATURE_JOB_TRANSH

    config = FeatureJobConfig(transh=replace(FEATURE_JOB_TRANSH, epochs=DEMO_TRANSH_EPOCHS))
    report = build_features(
        settings,
        config=config,
        on_epoch=lambda e, r: console.print(
            f"  TransH epoch {e:3d}  loss {r['loss']:.4f}"
            + (f"  valid MRR {r['valid_mrr']:.3f}" if "valid_mrr" in r else "")
        ),
    )
    for view, rows in report.rows.items():
        console.print(f"{view}: {rows:,} rows -> {report.written[view]}")
    if report.transh is not None:
        metrics = report.transh.test_metrics
        console.print(
            f"TransH held-out link prediction: MRR {metrics.get('mrr', float('nan')):.4f}, "
            f"Hits@10 {metrics.get('hits@10', float('nan')):.4f}"
        )


def _apply_and_materialize(settings: Settings) -> None:
    from featurestore.config import feature_store
    from featurestore.materialize import materialize
    from featurestore.store import apply

    definitions = apply(settings)
    console.print(f"applied {len(definitions.views)} feature views, {len(definitions.services)} feature services")
    report = materialize(feature_store(settings))
    console.print(
        f"materialized {report.rows:,} rows into {report.online_store} ({report.rows_per_second:,.0f} rows/s)"
    )


def _train_register_promote(settings: Settings) -> str:
    from registry.promotion import promote
    from registry.tracking import configure_mlflow
    from registry.train import train_and_log
    from training.models.base import MODELS, load_models

    configure_mlflow(settings)
    load_models()
    config = MODELS[DEMO_MODEL].Config(epochs=DEMO_EPOCHS)
    outcome = train_and_log(
        settings,
        DEMO_MODEL,
        config,
        register_version=True,
        on_epoch=lambda r: console.print(
            f"  epoch {r.epoch:2d}  loss {r.train_loss:.4f}  valid AUC {r.valid_auc:.4f}  {r.seconds:.1f}s"
        ),
    )
    assert outcome.version is not None
    test = outcome.run.test
    console.print(
        f"{DEMO_MODEL}: test AUC {test['auc']:.4f} (sparse tercile {test['auc/sparse']:.4f}), "
        f"F1 {test['f1']:.4f}; run {outcome.run_id}"
    )
    version = str(outcome.version.version)
    entry = promote(settings, settings.registered_model_name, version, force=False)
    console.print(
        f"registered {settings.registered_model_name} v{version}; champion: "
        f"{entry.from_version or '-'} -> {entry.to_version} (gate {entry.gate})"
    )
    return version


def _models_table(settings: Settings) -> None:
    from cli.models import versions_table
    from registry.versions import list_versions

    name = settings.registered_model_name
    console.print(versions_table(name, list_versions(settings, name)))


@contextmanager
def _service(settings: Settings, **env: str) -> Iterator[str]:
    """``graphrec serve`` on a free port in a subprocess with the demo's settings (and ``env``); yields its URL and
    stops it (SIGTERM: the request log drains before the process exits)."""
    import os
    import sys

    from graphrec.testing import free_port, http_service

    port = free_port()
    environment = (
        os.environ
        | env
        | {
            "GRAPHREC_WORK_DIR": str(settings.work_dir),
            "GRAPHREC_DATASET": settings.dataset,
            "GRAPHREC_DATA_DIR": str(settings.data_dir),
        }
    )
    command = [str(Path(sys.executable).with_name("graphrec")), "serve", "--port", str(port), "--log-level", "warning"]
    with http_service(command, port, env=environment) as (_, url):
        yield url


def _serve_and_predict(settings: Settings) -> None:
    """Start ``graphrec serve`` in a subprocess, ask it for predictions (one user unknown), print them, stop it."""
    from cli.serve import explanation_text
    from serving.client import ServingClient

    with _service(settings) as url:
        console.print(f"service ready at {url}; web page: {url}/ui/user (models: {url}/ui/model)")
        candidates = list(range(0, 40, 2))
        table = Table(*(text_column(header) for header in ("user", "model", "fallback", "top items (score)")))
        with ServingClient(url) as client:
            for user in (0, 1, 7, 10**9):
                result = client.predict(user, candidates)
                top = ", ".join(f"{s.item_id} ({s.score:.2f})" for s in result.scores[:5])
                label = "unknown" if user == 10**9 else str(user)
                table.add_row(label, f"{result.model.name} v{result.model.version}", str(result.fallback or "-"), top)
            recommended = client.recommend(0, k=5)
            explained = client.predict(0, candidates[:2], explain=True)
        console.print(table)
        console.print(
            "recommend(user 0, k=5): " + ", ".join(f"{s.item_id} ({s.score:.2f})" for s in recommended.scores)
        )
        console.print("why (user 0, the first two candidates):")
        for scored in explained.scores:
            console.print(explanation_text(scored))
    console.print(
        "The service is stopped. To browse the pages, run `graphrec serve` with the same settings and open "
        f"http://127.0.0.1:8000/ui/user (this demo's work dir: {settings.work_dir})."
    )


def _ab_loop(settings: Settings) -> None:
    """Train a second model on a short schedule and make it the challenger, serve both 50/50 with the request log,
    send simulated traffic that clicks the data's held-out positives, and print the A/B report."""
    from cli.monitor import ab_tables
    from registry.ab import ab_report, log_to_mlflow, plot_png
    from registry.promotion import promote
    from registry.tracking import configure_mlflow
    from registry.train import train_and_log
    from serving.contract import CHALLENGER
    from training.data.load import load_dataset
    from training.models.base import MODELS
    from training.simulation import ClickTruth, simulate_traffic

    configure_mlflow(settings)
    outcome = train_and_log(
        settings, DEMO_AB_MODEL, MODELS[DEMO_AB_MODEL].Config(epochs=DEMO_AB_EPOCHS), register_version=True
    )
    assert outcome.version is not None
    version = str(outcome.version.version)
    promote(settings, settings.registered_model_name, version, alias=CHALLENGER)
    console.print(f"{DEMO_AB_MODEL} v{version} (test AUC {outcome.run.test['auc']:.4f}) is the challenger")
    truth = ClickTruth.held_out(load_dataset(settings), settings.seed)
    since = time.time()
    with _service(settings, GRAPHREC_SERVING_CHALLENGER_SHARE="0.5", GRAPHREC_SERVING_REQUEST_LOG="true") as url:
        traffic = simulate_traffic(url, truth, DEMO_AB_REQUESTS, concurrency=4, seed=settings.seed)
    console.print(
        f"{traffic.requests:,} simulated requests ({traffic.failed} failed), {traffic.feedback_events:,} feedback "
        "events; the service drained its request log on stop"
    )
    report = ab_report(settings, since, resamples=DEMO_AB_RESAMPLES)
    plot = plot_png(report, settings.work_dir / "monitor" / "ab.png")
    log_to_mlflow(settings, report, plot)
    for table in ab_tables(report):
        console.print(table)
    console.print(f"[bold]verdict:[/bold] {report.verdict}")
    console.print(f"plot: {plot} (and on both versions' MLflow runs); again: graphrec monitor ab")


def demo(ctx: typer.Context) -> None:
    """Data -> graphs -> features -> Feast apply + materialize -> train KCAN -> register, promote -> serve, predict
    -> A/B against a challenger on simulated traffic."""
    settings = resolve_demo_data(settings_of(ctx))
    with reported_errors():
        _stage("1. load, validate and summarise the data", lambda: _summarise(settings))
        _stage("2. build the graphs (training interactions only)", lambda: _graphs(settings))
        _stage("3. graph features (TransH + neighbourhood aggregates) -> offline store", lambda: _features(settings))
        _stage("4. feast apply + materialize into the online store", lambda: _apply_and_materialize(settings))
        _stage(
            f"5. train {DEMO_MODEL} (short schedule), register, publish features, promote",
            lambda: _train_register_promote(settings),
        )
        _stage("6. the registry", lambda: _models_table(settings))
        _stage("7. serve the champion, predict online (one unknown user), stop", lambda: _serve_and_predict(settings))
        _stage(
            f"8. A/B: {DEMO_AB_MODEL} as challenger, 50/50 split, simulated clicks, the report",
            lambda: _ab_loop(settings),
        )
