"""``graphrec monitor ab`` (champion vs challenger from the request log) and ``graphrec monitor skew`` (served vs
offline features)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from cli.context import console, reported_errors, settings_of
from cli.output import JsonFlag, name_column, number_column, print_json, text_column

if TYPE_CHECKING:
    from registry.ab import AbReport

app = typer.Typer(
    help="Watch the online loop: the A/B report, training-serving skew and the request log's retention.",
    no_args_is_help=True,
)

RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str | None, now: float | None = None, option: str = "--since") -> float | None:
    """A moment option (``--since``, ``--older-than``) as unix seconds: a duration back from now (``30m``, ``2h``,
    ``7d``) or an ISO 8601 time (UTC unless it names a zone); None when not given."""
    if text is None:
        return None
    now = time.time() if now is None else now
    relative = RELATIVE.match(text.strip())
    if relative:
        return now - float(relative.group(1)) * SECONDS[relative.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{option} {text!r}: give a duration such as 30m, 2h or 7d, or an ISO time such as 2026-01-31T12:00"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _interval(value: float, low: float, high: float) -> str:
    if value != value:  # NaN
        return "-"
    return f"{value:.3f}\n[{low:.3f}, {high:.3f}]"


def ab_tables(report: AbReport) -> list[Table]:
    """One table per user group: each arm's impressions, clicks, CTR and AUC with their intervals."""
    from registry.ab import GROUPS

    level = f"{report.confidence_level:.0%}"
    tables = []
    for group in GROUPS:
        table = Table(
            name_column("arm"),
            number_column("impr."),
            number_column("clicks"),
            number_column(f"CTR\n{level} Wilson"),
            number_column(f"AUC\n{level} bootstrap"),
            title=f"users: {group}",
        )
        for arm, stats in report.groups[group].items():
            table.add_row(
                f"{arm} v{stats.version}",
                f"{stats.impressions:,}",
                f"{stats.clicks:,}",
                _interval(stats.ctr, stats.ctr_low, stats.ctr_high),
                _interval(stats.auc, stats.auc_low, stats.auc_high),
            )
        tables.append(table)
    return tables


@app.command("ab")
def ab(
    ctx: typer.Context,
    since: str | None = typer.Option(None, help="Only requests since then: 30m, 2h, 7d or an ISO time."),
    confidence: float = typer.Option(0.95, min=0.5, max=0.999, help="Confidence of intervals and of the verdict."),
    resamples: int = typer.Option(500, min=50, help="Bootstrap resamples of each AUC interval."),
    plot: Path | None = typer.Option(None, help="PNG path; default: <work>/monitor/ab.png."),
    include_forced: bool = typer.Option(False, help="Count requests whose arm the variant header forced."),
    mlflow: bool = typer.Option(True, help="Log the numbers, verdict and plot to both versions' MLflow runs."),
    json_out: JsonFlag = False,
) -> None:
    """Per arm: impressions, CTR and AUC of served scores vs clicks, overall and per activity tercile; a verdict."""
    settings = settings_of(ctx)
    with reported_errors():
        from registry.ab import ab_report, log_to_mlflow, plot_png

        report = ab_report(
            settings, parse_since(since), level=confidence, resamples=resamples, include_forced=include_forced
        )
        path = plot_png(report, plot or settings.work_dir / "monitor" / "ab.png")
        runs = log_to_mlflow(settings, report, path) if mlflow else []
        if json_out:
            print_json(report.to_json() | {"plot": str(path), "mlflow_runs": runs})
            return
        for table in ab_tables(report):
            console.print(table)
        if report.forced_left_out:
            console.print(f"{report.forced_left_out:,} requests with a forced arm (variant header) left out")
        console.print(f"terciles: {report.tercile_source}")
        console.print(f"[bold]verdict:[/bold] {report.verdict}")
        console.print(f"plot: {path}" + (f"; logged to MLflow runs {', '.join(runs)}" if runs else ""))


@app.command("skew")
def skew(
    ctx: typer.Context,
    since: str | None = typer.Option(None, help="Only requests since then: 30m, 2h, 7d or an ISO time."),
    sample: int = typer.Option(500, min=1, help="Latest requests (with logged feature values) to compare."),
    max_mismatch: float = typer.Option(0.0, min=0.0, max=1.0, help="Largest mismatch rate a feature may have."),
    max_psi: float = typer.Option(0.25, min=0.0, help="Largest training-vs-serving PSI a feature may have."),
    json_out: JsonFlag = False,
) -> None:
    """Served feature values vs Feast's point-in-time offline values (mismatch rate, max abs difference) and the
    training vs serving distribution (PSI) per feature; exit 1 above the thresholds (a deploy gate)."""
    settings = settings_of(ctx)
    with reported_errors():
        from registry.skew import skew_report

        report = skew_report(
            settings, parse_since(since), sample=sample, max_mismatch_rate=max_mismatch, max_psi=max_psi
        )
        if json_out:
            print_json(
                {
                    "requests": report.requests,
                    "passed": report.passed,
                    "failures": report.failures,
                    "features": [f.to_json() for f in report.features],
                }
            )
        else:
            table = Table(
                text_column("view"),
                name_column("feature"),
                number_column("n"),
                number_column("mismatch"),
                number_column("max |diff|"),
                number_column("PSI"),
            )
            for row in report.features:
                table.add_row(
                    row.view,
                    row.feature,
                    f"{row.compared:,}",
                    f"{row.mismatch_rate:.1%}",
                    f"{row.max_abs_diff:.3g}",
                    "-" if row.psi is None else f"{row.psi:.3f}",
                )
            console.print(table)
            console.print(f"{report.requests:,} logged requests with feature values compared")
            if not report.requests:
                console.print("nothing compared: no logged request carries feature values (see the setting")
                console.print("GRAPHREC_SERVING_REQUEST_LOG_FEATURE_SHARE)")
            for failure in report.failures:
                console.print(f"[red]skew:[/red] {failure}")
            if report.passed:
                console.print("no feature above the thresholds")
        if not report.passed:
            raise typer.Exit(1)


@app.command("prune")
def prune(
    ctx: typer.Context,
    older_than: str = typer.Option(..., help="Delete requests served before then: 30d, 12h or an ISO time."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would go; delete nothing."),
    json_out: JsonFlag = False,
) -> None:
    """Delete the request log's requests served before a moment and all their feedback, in one transaction (the
    log only grows otherwise). A/B and skew reports over the deleted window can no longer be made."""
    settings = settings_of(ctx)
    before = parse_since(older_than, option="--older-than")
    with reported_errors():
        from serving.requestlog import SqlSink

        requests, events = SqlSink(settings.request_log_uri, create=False).prune(before, dry_run=dry_run)
    moment = datetime.fromtimestamp(before, UTC).isoformat(timespec="seconds")
    if json_out:
        print_json({"before": moment, "dry_run": dry_run, "requests": requests, "feedback_events": events})
        return
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} {requests:,} requests and their {events:,} feedback events")
    console.print(f"cut-off: served before {moment}")
